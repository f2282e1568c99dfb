//! S3 errors: the one place where a failure becomes an S3 error code, an HTTP
//! status and an XML error body.
//!
//! Every layer below the gateway keeps its own error enum (`AuthError`,
//! checksum errors, engine errors, [`XmlError`]); each is converted into an
//! [`S3Error`] here, by a `From` impl in this file, so the wire contract (code,
//! status, default message) lives in one table and cannot drift between
//! handlers.
//!
//! The code table is taken from the AWS S3 error code list ("Error responses",
//! Amazon S3 API reference) as generated from the AWS model by s3s
//! (`crates/s3s/src/error/generated.rs`), plus the codes S3 returns that the
//! model does not list: `ConditionalRequestConflict` (409, conditional writes),
//! `XAmzContentSHA256Mismatch` (400, SigV4 payload hash),
//! `InvalidChunkSizeError` (403, aws-chunked streaming), `NotModified` (304)
//! and `IllegalLocationConstraintException` (400, CreateBucket region
//! mismatch). A wrong `x-amz-checksum-*` value is `BadDigest`, as S3 answers
//! it ("The CRC32 you specified did not match the calculated checksum."), see
//! [`S3Error::checksum_mismatch`].
//!
//! Bodies: S3 error bodies carry `Code`, `Message`, `Resource` (when known),
//! `RequestId` and then code-specific elements (`BucketName`, `Key`,
//! `ActualObjectSize`, ...), which we keep in [`S3Error::extra`] in the order
//! they were added. The `Error` element has no namespace, as in S3.
//!
//! Responses without a body: a 304 (`NotModified`) must not carry one (RFC
//! 9110), see [`S3Error::has_body`]; and a HEAD response never carries one
//! whatever its status, which only the caller knows: for HEAD, send the status
//! and headers (`x-amz-request-id`, ...) and drop the body.

use std::fmt;

use http::StatusCode;

use super::xml::{escape_text, XmlError};

macro_rules! s3_error_codes {
    ($( $(#[$doc:meta])* $variant:ident => ($status:ident, $message:expr); )*) => {
        /// An S3 error code. The variant name is the `<Code>` string on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum S3ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl S3ErrorCode {
            /// Every code, in table order (for tests and for documentation tooling).
            pub const ALL: &'static [S3ErrorCode] = &[$(S3ErrorCode::$variant),*];

            /// The `<Code>` string.
            pub const fn as_str(self) -> &'static str {
                match self { $(S3ErrorCode::$variant => stringify!($variant),)* }
            }

            /// The HTTP status S3 answers this code with.
            pub const fn status(self) -> StatusCode {
                match self { $(S3ErrorCode::$variant => StatusCode::$status,)* }
            }

            /// The message S3 sends when nothing more specific is known.
            pub const fn default_message(self) -> &'static str {
                match self { $(S3ErrorCode::$variant => $message,)* }
            }

            /// The code named `name` (exact, case-sensitive, as on the wire), if it is one we know.
            /// Lets lower layers whose error variants are named after S3 codes convert by name.
            pub fn from_name(name: &str) -> Option<S3ErrorCode> {
                match name {
                    $(stringify!($variant) => Some(S3ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

s3_error_codes! {
    AccessDenied => (FORBIDDEN, "Access Denied");
    AccountProblem => (FORBIDDEN,
        "There is a problem with your account that prevents the action from completing successfully.");
    AllAccessDisabled => (FORBIDDEN, "All access to this Amazon S3 resource has been disabled.");
    AuthorizationHeaderMalformed => (BAD_REQUEST, "The authorization header you provided is invalid.");
    /// Presigned-URL (query string) authentication parameters are malformed.
    AuthorizationQueryParametersError => (BAD_REQUEST,
        "The query-string authentication parameters you provided are invalid.");
    /// Content-MD5 or `x-amz-checksum-*` does not match the received body.
    BadDigest => (BAD_REQUEST, "The Content-MD5 you specified did not match what we received.");
    BucketAlreadyExists => (CONFLICT,
        "The requested bucket name is not available. The bucket namespace is shared by all users of the system. \
         Please select a different name and try again.");
    BucketAlreadyOwnedByYou => (CONFLICT,
        "Your previous request to create the named bucket succeeded and you already own it.");
    BucketNotEmpty => (CONFLICT, "The bucket you tried to delete is not empty");
    /// A conditional write (`If-None-Match: *`, `If-Match`) raced another write to the same key.
    ConditionalRequestConflict => (CONFLICT,
        "A conflicting operation occurred. If using PutObject you can retry the request. \
         If using multipart upload you should initiate another CreateMultipartUpload request and re-upload each part.");
    CredentialsNotSupported => (BAD_REQUEST, "This request does not support credentials.");
    EntityTooLarge => (BAD_REQUEST, "Your proposed upload exceeds the maximum allowed object size.");
    EntityTooSmall => (BAD_REQUEST, "Your proposed upload is smaller than the minimum allowed object size.");
    ExpiredToken => (BAD_REQUEST, "The provided token has expired.");
    /// CreateBucket with a LocationConstraint that is not this server's region.
    IllegalLocationConstraintException => (BAD_REQUEST,
        "The specified location-constraint is not valid for this endpoint.");
    IncompleteBody => (BAD_REQUEST,
        "You did not provide the number of bytes specified by the Content-Length HTTP header.");
    InternalError => (INTERNAL_SERVER_ERROR, "We encountered an internal error. Please try again.");
    InvalidAccessKeyId => (FORBIDDEN, "The AWS Access Key Id you provided does not exist in our records.");
    InvalidArgument => (BAD_REQUEST, "Invalid Argument");
    InvalidBucketName => (BAD_REQUEST, "The specified bucket is not valid.");
    InvalidBucketState => (CONFLICT, "The request is not valid with the current state of the bucket.");
    /// aws-chunked upload with a non-final chunk under 8 KiB (S3 answers 403).
    InvalidChunkSizeError => (FORBIDDEN, "Only the last chunk is allowed to have a size less than 8192 bytes");
    InvalidDigest => (BAD_REQUEST, "The Content-MD5 you specified is not valid.");
    InvalidLocationConstraint => (BAD_REQUEST, "The specified location constraint is not valid.");
    InvalidObjectState => (FORBIDDEN, "The operation is not valid for the current state of the object.");
    InvalidPart => (BAD_REQUEST,
        "One or more of the specified parts could not be found. The part may not have been uploaded, \
         or the specified entity tag may not match the part's entity tag.");
    InvalidPartNumber => (RANGE_NOT_SATISFIABLE, "The requested partnumber is not satisfiable");
    InvalidPartOrder => (BAD_REQUEST,
        "The list of parts was not in ascending order. The parts list must be specified in order by part number.");
    InvalidRange => (RANGE_NOT_SATISFIABLE, "The requested range is not satisfiable");
    InvalidRequest => (BAD_REQUEST, "Invalid Request");
    InvalidStorageClass => (BAD_REQUEST, "The storage class you specified is not valid");
    InvalidTag => (BAD_REQUEST, "The tag provided was not a valid tag.");
    InvalidToken => (BAD_REQUEST, "The provided token is malformed or otherwise invalid.");
    InvalidURI => (BAD_REQUEST, "Couldn't parse the specified URI.");
    KeyTooLongError => (BAD_REQUEST, "Your key is too long");
    MalformedXML => (BAD_REQUEST,
        "The XML you provided was not well-formed or did not validate against our published schema");
    MaxMessageLengthExceeded => (BAD_REQUEST, "Your request was too big.");
    MetadataTooLarge => (BAD_REQUEST, "Your metadata headers exceed the maximum allowed metadata size.");
    MethodNotAllowed => (METHOD_NOT_ALLOWED, "The specified method is not allowed against this resource.");
    MissingContentLength => (LENGTH_REQUIRED, "You must provide the Content-Length HTTP header.");
    MissingRequestBodyError => (BAD_REQUEST, "Request Body is empty");
    MissingSecurityHeader => (BAD_REQUEST, "Your request is missing a required header.");
    NoSuchBucket => (NOT_FOUND, "The specified bucket does not exist");
    NoSuchBucketPolicy => (NOT_FOUND, "The bucket policy does not exist");
    NoSuchCORSConfiguration => (NOT_FOUND, "The CORS configuration does not exist");
    NoSuchKey => (NOT_FOUND, "The specified key does not exist.");
    NoSuchLifecycleConfiguration => (NOT_FOUND, "The lifecycle configuration does not exist");
    NoSuchTagSet => (NOT_FOUND, "The TagSet does not exist");
    NoSuchUpload => (NOT_FOUND,
        "The specified upload does not exist. The upload ID may be invalid, \
         or the upload may have been aborted or completed.");
    NoSuchVersion => (NOT_FOUND, "The specified version does not exist.");
    NoSuchWebsiteConfiguration => (NOT_FOUND, "The specified bucket does not have a website configuration");
    NotImplemented => (NOT_IMPLEMENTED, "A header you provided implies functionality that is not implemented.");
    /// 304 for conditional GET/HEAD; sent without a body (see [`S3Error::has_body`]).
    NotModified => (NOT_MODIFIED, "Not Modified");
    ObjectLockConfigurationNotFoundError => (NOT_FOUND, "Object Lock configuration does not exist for this bucket");
    OperationAborted => (CONFLICT,
        "A conflicting conditional operation is currently in progress against this resource. Please try again.");
    PermanentRedirect => (MOVED_PERMANENTLY,
        "The bucket you are attempting to access must be addressed using the specified endpoint.");
    PreconditionFailed => (PRECONDITION_FAILED, "At least one of the pre-conditions you specified did not hold");
    RequestTimeTooSkewed => (FORBIDDEN,
        "The difference between the request time and the current time is too large.");
    RequestTimeout => (BAD_REQUEST,
        "Your socket connection to the server was not read from or written to within the timeout period.");
    ServerSideEncryptionConfigurationNotFoundError => (NOT_FOUND,
        "The server side encryption configuration was not found");
    ServiceUnavailable => (SERVICE_UNAVAILABLE, "Service is unable to handle request.");
    SignatureDoesNotMatch => (FORBIDDEN,
        "The request signature we calculated does not match the signature you provided. \
         Check your key and signing method.");
    SlowDown => (SERVICE_UNAVAILABLE, "Please reduce your request rate.");
    TemporaryRedirect => (TEMPORARY_REDIRECT, "You are being redirected to the bucket while DNS updates.");
    TooManyBuckets => (BAD_REQUEST, "You have attempted to create more buckets than allowed");
    UnexpectedContent => (BAD_REQUEST, "This request does not support content");
    /// DeleteObjects entry with an empty key.
    UserKeyMustBeSpecified => (BAD_REQUEST, "The key must be specified.");
    /// The SigV4 `x-amz-content-sha256` does not match the received body.
    XAmzContentSHA256Mismatch => (BAD_REQUEST,
        "The provided 'x-amz-content-sha256' header does not match what was computed.");
}

impl fmt::Display for S3ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An S3 error response: code (hence status), message, the resource it is
/// about, and the code-specific elements S3 adds after `RequestId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    pub code: S3ErrorCode,
    /// Human-readable; starts as the code's default message.
    pub message: String,
    /// The `<Resource>`, e.g. `/bucket/key`; omitted when `None`.
    pub resource: Option<String>,
    /// Extra elements in insertion order, e.g. `("BucketName", "photos")`. Names are
    /// compile-time constants (valid XML names); values are escaped on output.
    pub extra: Vec<(&'static str, String)>,
}

impl S3Error {
    /// An error with the code's default message.
    pub fn new(code: S3ErrorCode) -> S3Error {
        S3Error { code, message: code.default_message().to_owned(), resource: None, extra: Vec::new() }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> S3Error {
        self.message = message.into();
        self
    }

    pub fn with_resource(mut self, resource: impl Into<String>) -> S3Error {
        self.resource = Some(resource.into());
        self
    }

    /// Appends `<name>value</name>` after `RequestId`.
    pub fn with_extra(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        // Names come from our own code, never from the network: a bad one is a programmer error.
        debug_assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "extra element name {name:?} is not a plain XML name"
        );
        self.extra.push((name, value.into()));
        self
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Whether the response may carry the XML body: false for 304 Not Modified
    /// (and any 1xx/204, which S3 never uses for errors). HEAD requests must
    /// drop the body too, whatever this says; the caller knows the method.
    pub fn has_body(&self) -> bool {
        let status = self.status();
        !(status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED)
    }

    /// The XML error body, sent with `Content-Type: application/xml`.
    pub fn to_xml(&self, request_id: &str) -> String {
        let extra_len: usize = self.extra.iter().map(|(n, v)| 2 * n.len() + v.len() + 5).sum();
        let mut out = String::with_capacity(160 + self.message.len() + extra_len);
        out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        out.push_str("<Error><Code>");
        out.push_str(self.code.as_str());
        out.push_str("</Code><Message>");
        escape_text(&mut out, &self.message);
        out.push_str("</Message>");
        if let Some(resource) = &self.resource {
            out.push_str("<Resource>");
            escape_text(&mut out, resource);
            out.push_str("</Resource>");
        }
        out.push_str("<RequestId>");
        escape_text(&mut out, request_id);
        out.push_str("</RequestId>");
        for (name, value) in &self.extra {
            out.push('<');
            out.push_str(name);
            out.push('>');
            escape_text(&mut out, value);
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        out.push_str("</Error>");
        out
    }

    // Constructors for the errors S3 decorates with extra elements, so every
    // handler sends the same shape.

    /// `NoSuchBucket` with `<BucketName>`.
    pub fn no_such_bucket(bucket: &str) -> S3Error {
        S3Error::new(S3ErrorCode::NoSuchBucket).with_extra("BucketName", bucket)
    }

    /// `NoSuchKey` with `<Key>`.
    pub fn no_such_key(key: &str) -> S3Error {
        S3Error::new(S3ErrorCode::NoSuchKey).with_extra("Key", key)
    }

    /// `NoSuchUpload` with `<UploadId>`.
    pub fn no_such_upload(upload_id: &str) -> S3Error {
        S3Error::new(S3ErrorCode::NoSuchUpload).with_extra("UploadId", upload_id)
    }

    /// `BucketNotEmpty` with `<BucketName>`.
    pub fn bucket_not_empty(bucket: &str) -> S3Error {
        S3Error::new(S3ErrorCode::BucketNotEmpty).with_extra("BucketName", bucket)
    }

    /// `BucketAlreadyOwnedByYou` with `<BucketName>`.
    pub fn bucket_already_owned_by_you(bucket: &str) -> S3Error {
        S3Error::new(S3ErrorCode::BucketAlreadyOwnedByYou).with_extra("BucketName", bucket)
    }

    /// `BadDigest` for a wrong `x-amz-checksum-<algorithm>`, worded as S3 does;
    /// `algorithm` is the wire name: `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1`, `SHA256`.
    pub fn checksum_mismatch(algorithm: &str) -> S3Error {
        S3Error::new(S3ErrorCode::BadDigest)
            .with_message(format!("The {algorithm} you specified did not match the calculated checksum."))
    }

    /// `InvalidRange` (416) with the range asked for and the object's size.
    pub fn invalid_range(range_requested: &str, object_size_bytes: u64) -> S3Error {
        S3Error::new(S3ErrorCode::InvalidRange)
            .with_extra("RangeRequested", range_requested)
            .with_extra("ActualObjectSize", object_size_bytes.to_string())
    }

    /// `EntityTooSmall` for a multipart part under the minimum part size.
    pub fn entity_too_small(part_number: u32, etag: &str, proposed_size_bytes: u64, min_size_bytes: u64) -> S3Error {
        S3Error::new(S3ErrorCode::EntityTooSmall)
            .with_extra("ProposedSize", proposed_size_bytes.to_string())
            .with_extra("MinSizeAllowed", min_size_bytes.to_string())
            .with_extra("PartNumber", part_number.to_string())
            .with_extra("ETag", etag)
    }

    /// `EntityTooLarge` for a body or part over the maximum size.
    pub fn entity_too_large(proposed_size_bytes: u64, max_size_bytes: u64) -> S3Error {
        S3Error::new(S3ErrorCode::EntityTooLarge)
            .with_extra("ProposedSize", proposed_size_bytes.to_string())
            .with_extra("MaxSizeAllowed", max_size_bytes.to_string())
    }

    /// `InvalidChunkSizeError` for aws-chunked chunk number `chunk` (1-based) of `size_bytes`.
    pub fn invalid_chunk_size(chunk: u64, size_bytes: u64) -> S3Error {
        S3Error::new(S3ErrorCode::InvalidChunkSizeError)
            .with_extra("Chunk", chunk.to_string())
            .with_extra("BadChunkSize", size_bytes.to_string())
    }

    /// `MethodNotAllowed` with `<Method>` and `<ResourceType>` (`BUCKET`, `OBJECT`, `SERVICE`).
    pub fn method_not_allowed(method: &str, resource_type: &str) -> S3Error {
        S3Error::new(S3ErrorCode::MethodNotAllowed)
            .with_extra("Method", method)
            .with_extra("ResourceType", resource_type)
    }

    /// `InvalidArgument` naming the offending argument, e.g. (`max-keys`, `-1`).
    pub fn invalid_argument(message: impl Into<String>, name: &str, value: &str) -> S3Error {
        S3Error::new(S3ErrorCode::InvalidArgument)
            .with_message(message)
            .with_extra("ArgumentName", name)
            .with_extra("ArgumentValue", value)
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(resource) = &self.resource {
            write!(f, " ({resource})")?;
        }
        Ok(())
    }
}

impl std::error::Error for S3Error {}

impl From<S3ErrorCode> for S3Error {
    fn from(code: S3ErrorCode) -> S3Error {
        S3Error::new(code)
    }
}

/// A request body we could not accept is `MalformedXML`, with S3's fixed
/// message: S3 answers a schema violation, an oversized body and a `Delete`
/// of more than 1000 keys alike. The detail is for our logs, not the client.
impl From<XmlError> for S3Error {
    fn from(_: XmlError) -> S3Error {
        S3Error::new(S3ErrorCode::MalformedXML)
    }
}

// ---------------------------------------------------------------------------
// Errors of the other layers, mapped here and nowhere else.
// ---------------------------------------------------------------------------

/// Errors named after the S3 code they become keep their message; an unknown
/// name (a bug) becomes `fallback`.
fn named(code: &str, fallback: S3ErrorCode, message: String) -> S3Error {
    S3Error::new(S3ErrorCode::from_name(code).unwrap_or(fallback)).with_message(message)
}

impl From<crate::sigv4::AuthError> for S3Error {
    fn from(e: crate::sigv4::AuthError) -> S3Error {
        named(e.s3_code(), S3ErrorCode::AccessDenied, e.to_string())
    }
}

impl From<super::checksum::ChecksumError> for S3Error {
    fn from(e: super::checksum::ChecksumError) -> S3Error {
        named(e.s3_code(), S3ErrorCode::InvalidRequest, e.to_string())
    }
}

impl From<super::conditional::PutFailed> for S3Error {
    fn from(e: super::conditional::PutFailed) -> S3Error {
        match e {
            super::conditional::PutFailed::PreconditionFailed => S3Error::new(S3ErrorCode::PreconditionFailed),
            super::conditional::PutFailed::NoSuchKey => S3Error::new(S3ErrorCode::NoSuchKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_by_name_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &code in S3ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert_eq!(S3ErrorCode::from_name(code.as_str()), Some(code));
            assert!(!code.default_message().is_empty());
            // S3 errors are never 2xx, and only NotModified / redirects are 3xx.
            assert!(!code.status().is_success(), "{code}");
        }
        assert_eq!(S3ErrorCode::from_name("nosuchkey"), None);
        assert_eq!(S3ErrorCode::from_name(""), None);
        assert_eq!(S3ErrorCode::from_name("Custom"), None);
    }

    #[test]
    fn statuses_match_the_aws_table() {
        use S3ErrorCode::*;
        let expected = [
            (AccessDenied, 403),
            (AuthorizationHeaderMalformed, 400),
            (AuthorizationQueryParametersError, 400),
            (BadDigest, 400),
            (BucketAlreadyExists, 409),
            (BucketAlreadyOwnedByYou, 409),
            (BucketNotEmpty, 409),
            (ConditionalRequestConflict, 409),
            (EntityTooLarge, 400),
            (EntityTooSmall, 400),
            (IncompleteBody, 400),
            (InternalError, 500),
            (InvalidAccessKeyId, 403),
            (InvalidArgument, 400),
            (InvalidBucketName, 400),
            (InvalidChunkSizeError, 403),
            (InvalidDigest, 400),
            (InvalidPart, 400),
            (InvalidPartOrder, 400),
            (InvalidRange, 416),
            (InvalidRequest, 400),
            (InvalidStorageClass, 400),
            (KeyTooLongError, 400),
            (MalformedXML, 400),
            (MetadataTooLarge, 400),
            (MethodNotAllowed, 405),
            (MissingContentLength, 411),
            (MissingSecurityHeader, 400),
            (NoSuchBucket, 404),
            (NoSuchKey, 404),
            (NoSuchUpload, 404),
            (NotImplemented, 501),
            (NotModified, 304),
            (PreconditionFailed, 412),
            (RequestTimeTooSkewed, 403),
            (RequestTimeout, 400),
            (ServiceUnavailable, 503),
            (SignatureDoesNotMatch, 403),
            (SlowDown, 503),
            (XAmzContentSHA256Mismatch, 400),
        ];
        for (code, status) in expected {
            assert_eq!(code.status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn xml_body_matches_the_documented_shape() {
        let err = S3Error::new(S3ErrorCode::NoSuchKey)
            .with_message("The resource you requested does not exist")
            .with_resource("/mybucket/myfoto.jpg");
        assert_eq!(
            err.to_xml("4442587FB7D0A2F9"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code>\
             <Message>The resource you requested does not exist</Message><Resource>/mybucket/myfoto.jpg</Resource>\
             <RequestId>4442587FB7D0A2F9</RequestId></Error>"
        );
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert!(err.has_body());
    }

    #[test]
    fn extras_follow_request_id_in_order_and_are_escaped() {
        let err = S3Error::no_such_bucket("b<&>").with_extra("Note", "\"q\" 'a'\r");
        let xml = err.to_xml("r&1");
        assert!(xml.ends_with(
            "<RequestId>r&amp;1</RequestId><BucketName>b&lt;&amp;&gt;</BucketName>\
             <Note>&quot;q&quot; &apos;a&apos;&#13;</Note></Error>"
        ));
        assert!(!xml.contains("<Resource>"));
    }

    #[test]
    fn message_and_resource_are_escaped_including_control_characters() {
        let err = S3Error::new(S3ErrorCode::InvalidArgument).with_message("a<b\u{1}").with_resource("/b/k&\u{0}");
        let xml = err.to_xml("id");
        assert!(xml.contains("<Message>a&lt;b&#x1;</Message>"));
        assert!(xml.contains("<Resource>/b/k&amp;&#x0;</Resource>"));
    }

    #[test]
    fn not_modified_has_no_body() {
        let err = S3Error::new(S3ErrorCode::NotModified);
        assert_eq!(err.status(), StatusCode::NOT_MODIFIED);
        assert!(!err.has_body());
        assert!(S3Error::new(S3ErrorCode::PreconditionFailed).has_body());
        assert!(S3Error::new(S3ErrorCode::PermanentRedirect).has_body());
    }

    #[test]
    fn checksum_mismatch_is_bad_digest_worded_as_s3() {
        let err = S3Error::checksum_mismatch("CRC32");
        assert_eq!(err.code, S3ErrorCode::BadDigest);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert_eq!(err.message, "The CRC32 you specified did not match the calculated checksum.");
    }

    #[test]
    fn decorated_constructors_carry_their_elements() {
        let xml = S3Error::invalid_range("bytes=100-200", 10).to_xml("x");
        assert!(xml.contains("<RangeRequested>bytes=100-200</RangeRequested><ActualObjectSize>10</ActualObjectSize>"));
        let xml = S3Error::entity_too_small(3, "\"abc\"", 10, 5 << 20).to_xml("x");
        assert!(xml.contains(
            "<ProposedSize>10</ProposedSize><MinSizeAllowed>5242880</MinSizeAllowed>\
             <PartNumber>3</PartNumber><ETag>&quot;abc&quot;</ETag>"
        ));
        let err = S3Error::invalid_chunk_size(2, 3);
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert!(err.to_xml("x").contains("<Chunk>2</Chunk><BadChunkSize>3</BadChunkSize>"));
        assert!(S3Error::no_such_upload("u1").to_xml("x").contains("<UploadId>u1</UploadId>"));
        assert!(S3Error::method_not_allowed("POST", "OBJECT").to_xml("x").contains("<Method>POST</Method>"));
    }

    #[test]
    fn display_names_code_message_and_resource() {
        let err = S3Error::new(S3ErrorCode::AccessDenied).with_resource("/b");
        assert_eq!(err.to_string(), "AccessDenied: Access Denied (/b)");
        let boxed: Box<dyn std::error::Error> = Box::new(err);
        assert!(boxed.to_string().starts_with("AccessDenied"));
    }

    #[test]
    fn xml_errors_become_malformed_xml() {
        let err: S3Error = XmlError::Empty.into();
        assert_eq!(err.code, S3ErrorCode::MalformedXML);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err: S3Error = XmlError::TooMany { element: "Object", count_max: 1000 }.into();
        assert_eq!(err.code, S3ErrorCode::MalformedXML);
    }

    #[test]
    fn error_body_parses_back_with_a_real_xml_reader() {
        let err = S3Error::no_such_key("a&b <c>\u{7}").with_resource("/bkt/a&b");
        let xml = err.to_xml("REQ");
        let mut reader = quick_xml::Reader::from_str(&xml);
        let mut texts = Vec::new();
        loop {
            match reader.read_event().expect("well-formed") {
                quick_xml::events::Event::Text(t) => texts.push(t.unescape().expect("valid refs").into_owned()),
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(texts, ["NoSuchKey", "The specified key does not exist.", "/bkt/a&b", "REQ", "a&b <c>\u{7}"]);
    }
}
