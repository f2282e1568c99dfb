//! Tessera S3 gateway: HTTP server, SigV4, S3 routing and handlers, and the
//! embedded server's start-up, and the cluster topology in etcd.
pub mod cluster;
pub mod credentials;
pub mod http;
pub mod metrics;
pub mod node;
pub mod s3;
pub mod server;
pub mod sigv4;
pub mod wire;
