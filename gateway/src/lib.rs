//! Tessera S3 gateway: HTTP server, SigV4, S3 routing and handlers, and the
//! embedded server's start-up, the cluster topology in etcd and the commit log
//! in Kafka.
pub mod cluster;
pub mod cluster_client;
pub mod cluster_gateway;
pub mod credentials;
pub mod gc;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod node;
pub mod repair;
pub mod s3;
pub mod server;
pub mod sigv4;
pub mod wire;
