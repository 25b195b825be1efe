//! `haven evaluate`: the fall detector judged on labelled clips (a folder with a `labels.json`, in
//! the format of the development set `../shared/falls`): each clip analysed as a camera would see it
//! (`haven analyze`, the last frame held), falls raised and missed, false alarms, and how long after
//! the person reached the floor each alert came.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyze::{AnalyzeError, Analyzer, FileReport};

/// A labelled fall counts as raised by an alert from this long before ...
pub const EARLIEST_SECS: f64 = -3.0;
/// ... to this long after the person reaches the floor.
pub const LATEST_SECS: f64 = 4.0;

#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    #[error("{path}: {message}")]
    Labels { path: String, message: String },
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
}

/// One clip's labels (`labels.json` holds a list of them).
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub file: String,
    /// `fall` or `adl` (an everyday activity: no fall may be raised).
    pub kind: LabelKind,
    /// The second at which each fallen person reaches the floor.
    #[serde(default)]
    pub fall_times_s: Vec<f64>,
    #[serde(default)]
    pub falls: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    Fall,
    Adl,
}

/// Reads and checks `labels.json`; a malformed entry is named by its position and file.
pub fn read_labels(path: &Path) -> Result<Vec<Label>, EvaluateError> {
    let shown = path.display().to_string();
    let bad = |message: String| EvaluateError::Labels { path: shown.clone(), message };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| bad(format!("not a JSON list of clips: {e}")))?;
    let mut labels = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let name = entry.get("file").and_then(|f| f.as_str()).map(|f| format!(" (\"{f}\")")).unwrap_or_default();
        let label: Label = serde_json::from_value(entry).map_err(|e| bad(format!("entry {}{name}: {e}", i + 1)))?;
        let entry_error = |m: String| bad(format!("entry {}{name}: {m}", i + 1));
        if label.file.is_empty() || Path::new(&label.file).components().count() != 1 {
            return Err(entry_error("file must name a clip beside labels.json".into()));
        }
        if label.fall_times_s.iter().any(|t| !t.is_finite() || *t < 0.0) {
            return Err(entry_error("fall_times_s must be seconds of the clip (>= 0)".into()));
        }
        match label.kind {
            LabelKind::Fall if label.fall_times_s.is_empty() => return Err(entry_error("a fall clip needs fall_times_s".into())),
            LabelKind::Adl if !label.fall_times_s.is_empty() => return Err(entry_error("an adl clip has no fall_times_s".into())),
            _ => {}
        }
        if label.falls.is_some_and(|n| n != label.fall_times_s.len()) {
            return Err(entry_error(format!("falls is {} but fall_times_s lists {}", label.falls.unwrap_or(0), label.fall_times_s.len())));
        }
        labels.push(label);
    }
    if labels.is_empty() {
        return Err(bad("lists no clips".into()));
    }
    Ok(labels)
}

/// How one clip went.
#[derive(Debug, Clone, Serialize)]
pub struct ClipResult {
    pub file: String,
    pub kind: LabelKind,
    pub fall_times_s: Vec<f64>,
    /// When each fall alert was raised (seconds of the clip).
    pub alerts_s: Vec<f64>,
    /// Per labelled fall: seconds from reaching the floor to its alert; `None`: missed.
    pub delays_s: Vec<Option<f64>>,
    /// Fall alerts that match no labelled fall (every alert on an activity clip).
    pub false_alarms: usize,
    /// What raised each alert.
    pub reasons: Vec<String>,
    pub looks: std::collections::BTreeMap<String, u64>,
}

impl ClipResult {
    pub fn raised(&self) -> usize {
        self.delays_s.iter().filter(|d| d.is_some()).count()
    }
}

/// Matches a clip's fall alerts to its labelled falls: each fall takes the earliest alert not yet
/// taken within [EARLIEST_SECS, LATEST_SECS] of it.
pub fn judge(label: &Label, report: &FileReport) -> ClipResult {
    let alerts: Vec<f64> = report.falls().map(|e| e.raised_s).collect();
    let mut taken = vec![false; alerts.len()];
    let delays_s = label
        .fall_times_s
        .iter()
        .map(|&t| {
            let i = (0..alerts.len()).find(|&i| !taken[i] && (EARLIEST_SECS..=LATEST_SECS).contains(&(alerts[i] - t)))?;
            taken[i] = true;
            Some(((alerts[i] - t) * 100.0).round() / 100.0)
        })
        .collect();
    ClipResult {
        file: label.file.clone(),
        kind: label.kind,
        fall_times_s: label.fall_times_s.clone(),
        alerts_s: alerts,
        delays_s,
        false_alarms: taken.iter().filter(|t| !**t).count(),
        reasons: report.falls().map(|e| e.reason.as_ref().map(|r| r.summary.clone()).unwrap_or_default()).collect(),
        looks: report.looks.clone(),
    }
}

/// Every clip's result and the totals.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub clips: Vec<ClipResult>,
    pub falls: usize,
    pub raised: usize,
    /// Fall alerts on activity clips.
    pub false_alarms_adl: usize,
    /// Activity clips with at least one fall alert.
    pub adl_clips_alarmed: usize,
    pub adl_clips: usize,
    /// Alerts on fall clips that match no labelled fall (a second alert for one fall, or one far off).
    pub extra_alerts: usize,
    /// Seconds from reaching the floor to the alert, over the falls raised.
    pub median_delay_s: Option<f64>,
    pub max_delay_s: Option<f64>,
}

impl Evaluation {
    pub fn of(clips: Vec<ClipResult>) -> Self {
        let mut delays: Vec<f64> = clips.iter().flat_map(|c| c.delays_s.iter().flatten().copied()).collect();
        delays.sort_by(f64::total_cmp);
        let adl = clips.iter().filter(|c| c.kind == LabelKind::Adl);
        Self {
            falls: clips.iter().map(|c| c.fall_times_s.len()).sum(),
            raised: clips.iter().map(ClipResult::raised).sum(),
            false_alarms_adl: adl.clone().map(|c| c.false_alarms).sum(),
            adl_clips_alarmed: adl.clone().filter(|c| c.false_alarms > 0).count(),
            adl_clips: adl.count(),
            extra_alerts: clips.iter().filter(|c| c.kind == LabelKind::Fall).map(|c| c.false_alarms).sum(),
            median_delay_s: (!delays.is_empty()).then(|| delays[delays.len() / 2]),
            max_delay_s: delays.last().copied(),
            clips,
        }
    }

    /// The table `haven evaluate` prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out += &format!("{:<34} {:<4} {:>12} {:>22} {:>8}  {}\n", "clip", "kind", "floor at s", "alerts at s", "result", "reason");
        for c in &self.clips {
            let list = |v: &[f64]| if v.is_empty() { "-".to_string() } else { v.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(" ") };
            let result = match c.kind {
                LabelKind::Fall => {
                    let delays: Vec<String> = c.delays_s.iter().map(|d| d.map_or("missed".into(), |d| format!("{d:+.2}s"))).collect();
                    let extra = if c.false_alarms > 0 { format!(" +{} extra", c.false_alarms) } else { String::new() };
                    delays.join(" ") + &extra
                }
                LabelKind::Adl if c.false_alarms > 0 => format!("{} FALSE", c.false_alarms),
                LabelKind::Adl => "ok".into(),
            };
            let kind = match c.kind {
                LabelKind::Fall => "fall",
                LabelKind::Adl => "adl",
            };
            out += &format!(
                "{:<34} {:<4} {:>12} {:>22} {:>8}  {}\n",
                c.file,
                kind,
                list(&c.fall_times_s),
                list(&c.alerts_s),
                result,
                c.reasons.join("; ")
            );
        }
        let pct = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
        out += &format!(
            "falls raised: {} / {} ({:.0} %), within {EARLIEST_SECS:+} .. {LATEST_SECS:+} s of reaching the floor\n",
            self.raised,
            self.falls,
            pct(self.raised, self.falls)
        );
        out += &format!(
            "false alarms: {} on {} of {} activity clips; {} extra alerts on fall clips\n",
            self.false_alarms_adl, self.adl_clips_alarmed, self.adl_clips, self.extra_alerts
        );
        if let (Some(m), Some(x)) = (self.median_delay_s, self.max_delay_s) {
            out += &format!("floor to alert: median {m:+.2} s, latest {x:+.2} s\n");
        }
        let mut looks: std::collections::BTreeMap<&str, u64> = Default::default();
        for c in &self.clips {
            for (model, n) in &c.looks {
                *looks.entry(model).or_default() += n;
            }
        }
        let looks: Vec<String> = looks.iter().map(|(m, n)| format!("{m} {n}")).collect();
        out += &format!("model looks, all clips: {}\n", if looks.is_empty() { "none".into() } else { looks.join(", ") });
        out
    }
}

/// Analyses every clip of `labels` (beside `labels_path`) and judges it.
pub fn evaluate(analyzer: &Analyzer, labels_path: &Path, labels: &[Label], progress: impl Fn(&ClipResult)) -> Result<Evaluation, EvaluateError> {
    let dir = labels_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let mut clips = Vec::with_capacity(labels.len());
    for label in labels {
        let report = analyzer.run(&dir.join(&label.file))?;
        let result = judge(label, &report);
        progress(&result);
        clips.push(result);
    }
    Ok(Evaluation::of(clips))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::AnalyzedEvent;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("haven-labels-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("labels.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_malformed_labels_file_names_the_entry() {
        let p = write("bad", r#"[{"file": "a.mp4", "kind": "fall", "fall_times_s": [1.0]}, {"file": "b.mp4", "kind": "tumble"}]"#);
        let e = read_labels(&p).unwrap_err().to_string();
        assert!(e.contains("labels.json") && e.contains("entry 2 (\"b.mp4\")") && e.contains("tumble"), "{e}");
        let p = write("nofall", r#"[{"file": "a.mp4", "kind": "fall"}]"#);
        assert!(read_labels(&p).unwrap_err().to_string().contains("entry 1 (\"a.mp4\"): a fall clip needs fall_times_s"));
        let p = write("notjson", "{");
        assert!(read_labels(&p).unwrap_err().to_string().contains("not a JSON list"));
        let p = write("escape", r#"[{"file": "../x.mp4", "kind": "adl"}]"#);
        assert!(read_labels(&p).unwrap_err().to_string().contains("beside labels.json"));
    }

    fn report(alerts: &[f64]) -> FileReport {
        FileReport {
            file: "x.mp4".into(),
            duration_s: 10.0,
            frames: 100,
            looks: Default::default(),
            events: alerts
                .iter()
                .map(|&t| AnalyzedEvent {
                    kind: "fall".into(),
                    track_id: 1,
                    start_s: t - 1.0,
                    raised_s: t,
                    end_s: None,
                    score: 0.9,
                    long_lie: false,
                    long_lie_s: None,
                    model: None,
                    class: None,
                    reason: None,
                    zones: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn alerts_match_falls_within_the_window_and_the_rest_are_false_alarms() {
        let fall = Label { file: "f.mp4".into(), kind: LabelKind::Fall, fall_times_s: vec![2.0, 20.0], falls: None };
        let r = judge(&fall, &report(&[3.5, 3.9, 30.0]));
        assert_eq!(r.delays_s, vec![Some(1.5), None]);
        assert_eq!(r.false_alarms, 2);
        let adl = Label { file: "a.mp4".into(), kind: LabelKind::Adl, fall_times_s: vec![], falls: None };
        let e = Evaluation::of(vec![r, judge(&adl, &report(&[1.0]))]);
        assert_eq!((e.falls, e.raised, e.false_alarms_adl, e.adl_clips_alarmed, e.extra_alerts), (2, 1, 1, 1, 2));
        assert_eq!(e.median_delay_s, Some(1.5));
        assert!(e.table().contains("falls raised: 1 / 2 (50 %)"));
    }
}
