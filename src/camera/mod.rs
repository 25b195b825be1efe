//! One camera: its async actor, its blocking worker thread, its source, packets and status.

pub mod actor;
pub mod error;
pub mod gate;
pub mod live;
pub mod motion;
pub mod packet;
pub mod source;
pub mod status;
pub mod worker;

pub use actor::CameraActor;
pub use packet::{Feed, FramePacket};
pub use status::{CameraState, CameraStatus, CameraStatusView};
