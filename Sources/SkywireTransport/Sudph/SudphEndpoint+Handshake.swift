import NIOCore
import SkywireCrypto
import SkywireWire

/// A responder's handshake that sent its Response and waits for the initiator's first data
/// packet (PROTOCOL.md §4.3 "Confirmation"). No peer, transport or mux connection exists yet.
struct SudphPendingHandshake {
    let session: SudphPeer.Session
    let response: ByteBuffer
}

/// The responder side of sudph handshakes (PROTOCOL.md §2.1, §4.3): mac1 before any DH, cookies
/// under load, replays refused by TAI64N stamp, and a peer only once the handshake is confirmed.
extension SudphEndpoint {
    /// Responder handshakes waiting for their confirmation at once (one per key); more are
    /// refused before their DH until some are confirmed or expire.
    static let maxPendingHandshakes = 512
    /// How long a pending handshake waits for the initiator's first data packet
    /// (`HANDSHAKE_TIMEOUT`).
    static let pendingHandshakeLifetime = TimeAmount.seconds(10)
    /// Initiations per second (with a valid mac1) above which the responder is under load and
    /// demands a valid mac2, answering others with a Cookie Reply (§2.1).
    static let cookieThresholdPerSecond = 50

    var monotonicNow: Int64 { Int64(truncatingIfNeeded: NIODeadline.now().uptimeNanoseconds) }

    /// A well-formed Initiation (type 1). On `eventLoop`.
    func receiveInitiation(_ data: ByteBuffer, senderIndex: UInt32, message: Range<Int>, from: SocketAddress) {
        guard let identity = try? manager.noiseIdentity() else { return }
        data.withUnsafeReadableBytes { packet in
            guard SudphHandshakeMACs.checkMac1(packet, mac1Key: identity.mac1Key) else {
                refuse(.mac1, "initiation from \(from) without a valid mac1")
                return
            }
            let initiation = Array(packet[message])
            let now = monotonicNow
            // A resent copy of an initiation still waiting for confirmation: the same Response.
            if let index = responders.pendingIndex(fingerprint: initiation), let pending = responders.pending(at: index) {
                send(pending.response, to: from)
                flush()
                return
            }
            if handshakeLoad.record(now: now) {
                let address = SudphHandshakeMACs.addressBytes(from)
                let cookie = cookieSecret.cookie(for: address, nowSeconds: now / 1_000_000_000)
                guard SudphHandshakeMACs.checkMac2(packet, cookie: cookie) else {
                    let reply = SudphHandshakeMACs.cookieReply(
                        senderIndex: senderIndex, cookie: cookie, cookieKey: identity.cookieKey,
                        mac1: SudphHandshakeMACs.mac1(of: packet), nonce: SecureRandom.bytes(SudphLayout.cookieNonceSize))
                    send(ByteBuffer(bytes: reply), to: from)
                    flush()
                    refuse(.cookie, "initiation from \(from) under load without a valid mac2: cookie sent")
                    return
                }
                guard rateLimiter.allow(Array(address.dropLast(2)), now: now) else {
                    refuse(.rateLimited, "initiation from \(from) under load: over \(HandshakeRateLimiter.ratePerSecond)/s for its address")
                    return
                }
            }
            guard responders.hasRoom(now: now) else {
                refuse(.pendingFull, "initiation from \(from): \(Self.maxPendingHandshakes) handshakes await confirmation")
                return
            }
            respond(to: initiation, senderIndex: senderIndex, from: from, identity: identity, now: now)
        }
    }

    /// The Noise part: read message 1, check the claim and the stamp, send the Response, and
    /// keep the handshake pending.
    private func respond(to initiation: [UInt8], senderIndex: UInt32, from: SocketAddress,
                         identity: NoiseStaticIdentity, now: Int64) {
        let hs: NoiseHandshake
        let claimed: PublicKey
        let stamp: TAI64N
        do {
            hs = try NoiseHandshake.ikResponder(identity: identity)
            let payload = try hs.readMessage(initiation)
            (claimed, stamp) = try IdentityClaim.verify(payload: payload, remoteStatic: hs.remoteStaticKey)
        } catch {
            refuse(.handshake, "initiation from \(from): \(error)")
            return
        }
        // Before the Response's DHs: a replayed stamp costs no more work.
        guard responders.timestamps.isFresh(stamp, from: claimed) else {
            refuse(.replay, "initiation from \(claimed.hex) at \(from) stamped \(stamp) is not newer than the last accepted")
            return
        }
        let pending: SudphPendingHandshake
        let index = newIndex()
        do {
            let msg2 = try hs.writeMessage(payload: [])
            let (send, receive) = try hs.split()
            guard let sk = send.key, let rk = receive.key else { throw NoiseError.missingKey("split") }
            let session = SudphPeer.Session(localIndex: index, remoteIndex: senderIndex, sendKey: sk, receiveKey: rk,
                                            confirmed: false)
            let response = try msg2.withUnsafeBytes {
                try SudphPacket.response(senderIndex: index, receiverIndex: senderIndex, message: $0)
            }
            pending = SudphPendingHandshake(session: session, response: ByteBuffer(bytes: response))
        } catch {
            refuse(.handshake, "response to \(claimed.hex) at \(from): \(error)")
            return
        }
        switch responders.offer(key: claimed, timestamp: stamp, index: index, fingerprint: initiation,
                                pending: pending, now: now) {
        case .replay:
            refuse(.replay, "initiation from \(claimed.hex) at \(from) stamped \(stamp) is a replay")
        case .full:
            refuse(.pendingFull, "initiation from \(claimed.hex) at \(from): too many pending handshakes")
        case .accepted:
            logger.debug("sudph: handshake from \(claimed.short) at \(from): response sent, awaiting confirmation")
            send(pending.response, to: from)
            flush()
        }
    }

    /// A data packet for a pending handshake's index: when it authenticates, the handshake is
    /// confirmed; the peer, its transport and mux connection are created now, and the key's
    /// previous session (if any) is closed. On `eventLoop`.
    func receiveConfirmation(_ packet: ByteBuffer, localIndex: UInt32, counter: UInt64, keyPhase: UInt8,
                             ciphertext: Range<Int>, from: SocketAddress) {
        guard let pending = responders.pending(at: localIndex) else { return }
        let session = pending.session
        // The initiator's first packets are under its Split() key (phase 0).
        let opened = keyPhase == 0 && counter < ReplayWindow.rejectAfterMessages && ((try? packet.withUnsafeReadableBytes { bytes in
            try session.receiveKey.open(counter: counter, ad: UnsafeRawBufferPointer(rebasing: bytes[0..<SudphLayout.dataHeaderSize]),
                                        ciphertext: UnsafeRawBufferPointer(rebasing: bytes[ciphertext]), into: plaintext)
        }) != nil)
        guard opened, let confirmed = responders.confirm(localIndex, now: monotonicNow) else {
            drop("unauthenticated data for pending handshake \(localIndex) from \(from)")
            return
        }
        if let old = confirmed.replacedLive, let oldPeer = peersByIndex[old] {
            oldPeer.close(reason: "replaced by a newer confirmed handshake")
        }
        let peer = SudphPeer.confirmedResponder(endpoint: self, remote: confirmed.key, address: from, session: session)
        peer.register()
        // The confirming packet itself (a keepalive, or a record) goes the normal way.
        peer.receiveData(packet, localIndex: localIndex, counter: counter, keyPhase: keyPhase, ciphertext: ciphertext, from: from)
    }

    /// Counts and logs a refused initiation (`RefusalLog`: debug lines rate-limited, a periodic
    /// info summary).
    func refuse(_ reason: HandshakeRefusal, _ detail: @autoclosure () -> String) {
        droppedPackets &+= 1
        RefusalLog.shared.note(reason.logReason, "sudph: \(detail())", logger: logger)
    }
}
