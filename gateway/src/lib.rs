//! Tessera S3 gateway: HTTP server, SigV4, S3 routing and handlers.
