//! Reading a PyTorch zip checkpoint: its members, byte order and pickle.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::checkpoint_error;
use crate::pickle::{Machine, V};
use crate::PoseError;

type Zip = zip::ZipArchive<std::io::BufReader<std::fs::File>>;

/// An opened `.pt` archive: `<dir>data.pkl` and the storages under `<dir>data/`.
pub(super) struct Archive {
    pt: PathBuf,
    zip: Zip,
    /// the members' common folder, with its trailing `/`
    dir: String,
    /// the pickle's member name
    pkl: String,
}

impl Archive {
    pub fn open(pt: &Path) -> Result<Self, PoseError> {
        let err = |msg: String| checkpoint_error(pt, msg);
        let file = std::fs::File::open(pt).map_err(|source| PoseError::Io {
            path: pt.to_path_buf(),
            source,
        })?;
        // PyTorch writes the archive from byte 0: say so rather than let the reader guess a prefix
        // (its guess failed on a torch 2.15 checkpoint whose random fp16 data held central-directory-like
        // bytes: "Invalid Central Directory header"); a guess is still the fallback.
        let config = zip::read::Config {
            archive_offset: zip::read::ArchiveOffset::Known(0),
        };
        let zip = zip::ZipArchive::with_config(config, std::io::BufReader::new(file))
            .or_else(|_| {
                let file = std::fs::File::open(pt)?;
                zip::ZipArchive::new(std::io::BufReader::new(file))
            })
            .map_err(|e| {
                err(format!(
                    "not a PyTorch zip checkpoint ({e}); legacy non-zip .pt files are not supported"
                ))
            })?;
        let names: Vec<String> = zip
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| err(format!("bad member name: {e}")))?;
        let pkl = names
            .iter()
            .filter(|n| n.ends_with("data.pkl"))
            .min_by_key(|n| n.len())
            .ok_or_else(|| err("no data.pkl in the archive".into()))?
            .clone();
        let dir = pkl.strip_suffix("data.pkl").unwrap().to_string();
        Ok(Self {
            pt: pt.to_path_buf(),
            zip,
            dir,
            pkl,
        })
    }

    /// The whole member `name`.
    fn member(&mut self, name: &str) -> Result<Vec<u8>, PoseError> {
        let (zip, pt) = (&mut self.zip, &self.pt);
        let err = |msg: String| checkpoint_error(pt, msg);
        let mut f = zip
            .by_name(name)
            .map_err(|e| err(format!("member {name}: {e}")))?;
        let mut v = Vec::with_capacity(f.size() as usize);
        f.read_to_end(&mut v)
            .map_err(|e| err(format!("member {name}: {e}")))?;
        Ok(v)
    }

    /// The pickled checkpoint, unpickled (after checking the byte order, when the archive says it).
    pub fn unpickle(&mut self) -> Result<V, PoseError> {
        if let Ok(bo) = self.member(&format!("{}byteorder", self.dir)) {
            if bo.trim_ascii() != b"little" {
                return Err(checkpoint_error(
                    &self.pt,
                    format!(
                        "byte order {:?} is not supported",
                        String::from_utf8_lossy(&bo)
                    ),
                ));
            }
        }
        let pkl = self.pkl.clone();
        let pickle = self.member(&pkl)?;
        Machine::run(&pickle).map_err(|e| checkpoint_error(&self.pt, format!("{pkl}: {e}")))
    }

    /// The raw bytes of storage `key`.
    pub fn storage(&mut self, key: &str) -> Result<Vec<u8>, PoseError> {
        self.member(&format!("{}data/{key}", self.dir))
    }
}
