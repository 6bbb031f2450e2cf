import SkywireCrypto

extension StcprSession {
    /// The length the next record must have while the handshake runs (PROTOCOL.md §3: message 1
    /// with its mac1 for a responder, message 2 for an initiator); nil once established. `RawStcprLink` closes
    /// on any other length prefix at once instead of buffering up to 64 KiB for it.
    var expectedHandshakeRecordLength: Int? {
        guard !isEstablished else { return nil }
        return isInitiator ? IdentityClaim.message2Length : Self.initiationRecordLength
    }
}
