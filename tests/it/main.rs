//! One integration binary: the real server on loopback, real clients, real video.

mod accounts;
mod ack;
mod cluster;
mod core;
mod detect;
mod events;
mod falls;
mod faults;
mod live_view;
mod manage;
mod media;
mod models;
mod notify;
mod mqtt;
mod pose;
mod process;
mod rtsp;
mod structure;
mod support;
mod zones;
