//! Stable error codes: part of the protocol, never renumbered.

use std::fmt;

/// What went wrong, as a number a client in any language can branch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1: the frame is not valid MessagePack or not a valid message.
    Malformed,
    /// 2: the peer speaks a protocol version this side does not.
    UnsupportedVersion,
    /// 3: the frame is larger than the frame limit.
    FrameTooLarge,
    /// 4: a batch or list has more entries than allowed.
    BatchTooLarge,
    /// 5: values are nested deeper than allowed.
    NestingTooDeep,
    /// 6: a message type this side does not know.
    UnknownMessageType,
    /// 7: a change's timestamp is too far ahead of the receiver's clock.
    ClockDrift,
    /// 8: no token where one is required.
    Unauthenticated,
    /// 9: the rules deny this operation.
    Forbidden,
    /// 10: the collection does not exist or is not served here.
    UnknownCollection,
    /// 11: too many operations per second.
    RateLimited,
    /// 12: too many subscriptions on this connection.
    TooManySubscriptions,
    /// 13: a key, collection or field name breaks its rules.
    InvalidName,
    /// 14: the cursor comes from another log; reconcile by merkle instead.
    CursorInvalid,
    /// 15: the receiver cannot keep up; the connection is being closed.
    SlowConsumer,
    /// 16: a message that is valid but not allowed now (e.g. a push before hello).
    UnexpectedMessage,
    /// 17: the server failed; the operation may be retried.
    Internal,
    /// 18: the server is shutting down or not ready; retry elsewhere or later.
    Unavailable,
    /// 19: the token has expired (or has no `exp`); get a fresh one.
    TokenExpired,
    /// 20: the token's signature does not verify, or it is not a valid token at all.
    TokenInvalid,
    /// 21: a valid token for someone else: wrong issuer or audience.
    TokenRejected,
    /// 22: the request (its body) did not arrive within the time allowed.
    Timeout,
    /// 23: the write would make a record larger than a record may be (fields, bytes,
    /// set members); `message` names the record and the limit.
    RecordTooLarge,
    /// 24: the answer would be larger than allowed (rows or bytes); narrow the query.
    ResultTooLarge,
    /// A code from a newer protocol revision.
    Other(u16),
}

impl ErrorCode {
    /// Every code this revision knows, in wire order (`Other` aside): the table clients
    /// are given, so names and retry rules are never copied by hand.
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::Malformed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::FrameTooLarge,
        ErrorCode::BatchTooLarge,
        ErrorCode::NestingTooDeep,
        ErrorCode::UnknownMessageType,
        ErrorCode::ClockDrift,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::UnknownCollection,
        ErrorCode::RateLimited,
        ErrorCode::TooManySubscriptions,
        ErrorCode::InvalidName,
        ErrorCode::CursorInvalid,
        ErrorCode::SlowConsumer,
        ErrorCode::UnexpectedMessage,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
        ErrorCode::TokenExpired,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenRejected,
        ErrorCode::Timeout,
        ErrorCode::RecordTooLarge,
        ErrorCode::ResultTooLarge,
    ];

    /// The wire number.
    pub fn as_u16(self) -> u16 {
        match self {
            ErrorCode::Malformed => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::FrameTooLarge => 3,
            ErrorCode::BatchTooLarge => 4,
            ErrorCode::NestingTooDeep => 5,
            ErrorCode::UnknownMessageType => 6,
            ErrorCode::ClockDrift => 7,
            ErrorCode::Unauthenticated => 8,
            ErrorCode::Forbidden => 9,
            ErrorCode::UnknownCollection => 10,
            ErrorCode::RateLimited => 11,
            ErrorCode::TooManySubscriptions => 12,
            ErrorCode::InvalidName => 13,
            ErrorCode::CursorInvalid => 14,
            ErrorCode::SlowConsumer => 15,
            ErrorCode::UnexpectedMessage => 16,
            ErrorCode::Internal => 17,
            ErrorCode::Unavailable => 18,
            ErrorCode::TokenExpired => 19,
            ErrorCode::TokenInvalid => 20,
            ErrorCode::TokenRejected => 21,
            ErrorCode::Timeout => 22,
            ErrorCode::RecordTooLarge => 23,
            ErrorCode::ResultTooLarge => 24,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a wire number.
    pub fn from_u16(code: u16) -> ErrorCode {
        match code {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::FrameTooLarge,
            4 => ErrorCode::BatchTooLarge,
            5 => ErrorCode::NestingTooDeep,
            6 => ErrorCode::UnknownMessageType,
            7 => ErrorCode::ClockDrift,
            8 => ErrorCode::Unauthenticated,
            9 => ErrorCode::Forbidden,
            10 => ErrorCode::UnknownCollection,
            11 => ErrorCode::RateLimited,
            12 => ErrorCode::TooManySubscriptions,
            13 => ErrorCode::InvalidName,
            14 => ErrorCode::CursorInvalid,
            15 => ErrorCode::SlowConsumer,
            16 => ErrorCode::UnexpectedMessage,
            17 => ErrorCode::Internal,
            18 => ErrorCode::Unavailable,
            19 => ErrorCode::TokenExpired,
            20 => ErrorCode::TokenInvalid,
            21 => ErrorCode::TokenRejected,
            22 => ErrorCode::Timeout,
            23 => ErrorCode::RecordTooLarge,
            24 => ErrorCode::ResultTooLarge,
            other => ErrorCode::Other(other),
        }
    }

    /// Whether sending the same thing again later can succeed. The one place this is
    /// decided: the replica requeues such refusals, and `@weft/client` reads the answer
    /// from the events and the code table rather than keeping a list of its own.
    pub fn is_retryable(self) -> bool {
        // A timeout is the transport's fault (a slow or stalled link), not the request's.
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::Internal
                | ErrorCode::Unavailable
                | ErrorCode::SlowConsumer
                | ErrorCode::Timeout
        )
    }

    /// The code's stable name, as clients show it (`codeName` in `@weft/client`, `name`
    /// in HTTP error bodies); `Other` for a code from a newer revision.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "Malformed",
            ErrorCode::UnsupportedVersion => "UnsupportedVersion",
            ErrorCode::FrameTooLarge => "FrameTooLarge",
            ErrorCode::BatchTooLarge => "BatchTooLarge",
            ErrorCode::NestingTooDeep => "NestingTooDeep",
            ErrorCode::UnknownMessageType => "UnknownMessageType",
            ErrorCode::ClockDrift => "ClockDrift",
            ErrorCode::Unauthenticated => "Unauthenticated",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnknownCollection => "UnknownCollection",
            ErrorCode::RateLimited => "RateLimited",
            ErrorCode::TooManySubscriptions => "TooManySubscriptions",
            ErrorCode::InvalidName => "InvalidName",
            ErrorCode::CursorInvalid => "CursorInvalid",
            ErrorCode::SlowConsumer => "SlowConsumer",
            ErrorCode::UnexpectedMessage => "UnexpectedMessage",
            ErrorCode::Internal => "Internal",
            ErrorCode::Unavailable => "Unavailable",
            ErrorCode::TokenExpired => "TokenExpired",
            ErrorCode::TokenInvalid => "TokenInvalid",
            ErrorCode::TokenRejected => "TokenRejected",
            ErrorCode::Timeout => "Timeout",
            ErrorCode::RecordTooLarge => "RecordTooLarge",
            ErrorCode::ResultTooLarge => "ResultTooLarge",
            ErrorCode::Other(_) => "Other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u16())
    }
}

impl From<&crate::codec::DecodeError> for ErrorCode {
    fn from(error: &crate::codec::DecodeError) -> ErrorCode {
        use crate::codec::DecodeError;
        match error {
            DecodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            DecodeError::TooDeep { .. } => ErrorCode::NestingTooDeep,
            DecodeError::UnknownMessageType { .. } => ErrorCode::UnknownMessageType,
            _ => ErrorCode::Malformed,
        }
    }
}
