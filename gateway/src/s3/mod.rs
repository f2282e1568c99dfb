//! The S3 API: typed endpoints, handlers per operation family, S3 errors and XML.
pub mod body;
pub mod buckets;
pub mod checksum;
pub mod cluster;
pub mod conditional;
pub mod dispatch;
pub mod error;
pub mod md5_blocks;
pub mod md5_lanes;
pub mod multipart;
pub mod objects;
pub mod owner;
pub mod range;
pub mod service;
pub mod xml;
