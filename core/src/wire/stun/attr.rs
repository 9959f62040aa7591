//! Attribute types (RFC 8489 §18.3 and the IANA registry) this codec knows.

/// MAPPED-ADDRESS (§14.1), the legacy un-XORed reflexive address.
pub const MAPPED_ADDRESS: u16 = 0x0001;
/// CHANGE-REQUEST (RFC 5780 §7.2): which of its addresses the server is
/// asked to answer from.
pub const CHANGE_REQUEST: u16 = 0x0003;
/// USERNAME (§14.3).
pub const USERNAME: u16 = 0x0006;
/// MESSAGE-INTEGRITY (§14.5), HMAC-SHA1; carried, never verified here.
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
/// ERROR-CODE (§14.8).
pub const ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES (§14.13).
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// REALM (§14.9).
pub const REALM: u16 = 0x0014;
/// NONCE (§14.10).
pub const NONCE: u16 = 0x0015;
/// MESSAGE-INTEGRITY-SHA256 (§14.6); carried, never verified here.
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
/// PASSWORD-ALGORITHM (§14.12).
pub const PASSWORD_ALGORITHM: u16 = 0x001D;
/// USERHASH (§14.4).
pub const USERHASH: u16 = 0x001E;
/// XOR-MAPPED-ADDRESS (§14.2).
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// PRIORITY (RFC 8445 §16.1).
pub const PRIORITY: u16 = 0x0024;
/// USE-CANDIDATE (RFC 8445 §16.1).
pub const USE_CANDIDATE: u16 = 0x0025;
/// PADDING (RFC 5780 §7.6): not understood, on purpose. It asks for an
/// answer as large as the request's padding; a request with it gets 420.
pub const PADDING: u16 = 0x0026;
/// RESPONSE-PORT (RFC 5780 §7.5): not understood, on purpose. It asks for
/// the answer at another port of the source; a request with it gets 420.
pub const RESPONSE_PORT: u16 = 0x0027;
/// PASSWORD-ALGORITHMS (§14.11), comprehension-optional.
pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
/// ALTERNATE-DOMAIN (§14.16), comprehension-optional.
pub const ALTERNATE_DOMAIN: u16 = 0x8003;
/// SOFTWARE (§14.14), comprehension-optional.
pub const SOFTWARE: u16 = 0x8022;
/// ALTERNATE-SERVER (§14.15), comprehension-optional.
pub const ALTERNATE_SERVER: u16 = 0x8023;
/// FINGERPRINT (§14.7), comprehension-optional; must be last.
pub const FINGERPRINT: u16 = 0x8028;
/// ICE-CONTROLLED (RFC 8445 §16.1), comprehension-optional.
pub const ICE_CONTROLLED: u16 = 0x8029;
/// ICE-CONTROLLING (RFC 8445 §16.1), comprehension-optional.
pub const ICE_CONTROLLING: u16 = 0x802A;
/// RESPONSE-ORIGIN (RFC 5780 §7.3), comprehension-optional: the address a
/// response was sent from.
pub const RESPONSE_ORIGIN: u16 = 0x802B;
/// OTHER-ADDRESS (RFC 5780 §7.4), comprehension-optional: the server's
/// address with the other IP and the other port.
pub const OTHER_ADDRESS: u16 = 0x802C;

/// The comprehension-required types (0x0000-0x7FFF) this codec
/// understands; any other type in that range makes a request fail with
/// 420 (§6.3.1).
pub const UNDERSTOOD_REQUIRED: [u16; 14] = [
    MAPPED_ADDRESS,
    CHANGE_REQUEST,
    USERNAME,
    MESSAGE_INTEGRITY,
    ERROR_CODE,
    UNKNOWN_ATTRIBUTES,
    REALM,
    NONCE,
    MESSAGE_INTEGRITY_SHA256,
    PASSWORD_ALGORITHM,
    USERHASH,
    XOR_MAPPED_ADDRESS,
    PRIORITY,
    USE_CANDIDATE,
];

/// Whether `kind` is in the comprehension-required range (§14).
pub const fn is_comprehension_required(kind: u16) -> bool {
    kind < 0x8000
}
