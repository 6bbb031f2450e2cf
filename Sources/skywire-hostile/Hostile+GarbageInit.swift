import ArgumentParser
import SkywireCrypto
import SkywireWire

/// `garbage-init`: random sudph Initiations (type 1, reserved bytes zero, the rest random) at a
/// fixed rate, bounded in count and time: the pre-authentication flood of issue 16. With
/// `--mac1-pk` the current-size packets carry a valid mac1 for that visor (an attacker who knows
/// its public key), so they get past mac1 and exercise the cookie path. With `--valid` every
/// packet is a real Initiation to that visor from a fresh throw-away key (`--wire v1` for
/// visors built before the change), which the visor must not turn into peers.
struct GarbageInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "garbage-init",
        abstract: "Send random sudph initiations (type 1) to HOST:PORT at a rate, bounded in count and time.")

    /// Longest run and highest rate accepted, whatever --duration and --rate say.
    static let maxDurationSeconds = 600.0
    static let maxRate = 100_000
    /// The pre-v2 Initiation size (PROTOCOL.md v1): used to measure visors built before the change.
    static let legacySize = 137

    @Option(help: "Target HOST:PORT (an IP literal).")
    var target: String
    @Option(help: "Datagrams per second (at most 100000).")
    var rate: Int = 2000
    @Option(help: "Seconds to send for (at most 600).")
    var duration: Double = 10
    @Option(help: "Stop after this many datagrams (default: rate × duration).")
    var count: Int?
    @Option(help: "Comma-separated packet sizes used in turn (default: the current Initiation size, 181; 137 is v1).")
    var sizes: String = String(SudphLayout.initiationPacketSize)
    @Option(help: "Give current-size packets a valid mac1 for this visor (64-hex public key).")
    var mac1Pk: String?
    @Flag(help: "Send valid Initiations from throw-away keys to the --mac1-pk visor instead of random bytes.")
    var valid = false
    @Option(help: "With --valid: v2 (current) or v1 (before replay protection).")
    var wire: HostileHandshake.Wire = .v2

    func run() throws {
        let to = try HostileSocket.address(target)
        let sizeList = sizes.split(separator: ",").compactMap { Int($0) }.filter { $0 >= SudphLayout.initiationHeaderSize }
        guard !sizeList.isEmpty, rate > 0, rate <= Self.maxRate, duration > 0 else {
            throw ValidationError("need sizes ≥ 8, a rate in 1...\(Self.maxRate) and a positive duration")
        }
        let seconds = min(duration, Self.maxDurationSeconds)
        let total = min(count ?? Int(Double(rate) * seconds), Int(Double(rate) * seconds))
        let remote = try mac1Pk.map { try PublicKey(hex: $0) }
        let mac1Key = try remote.map { HandshakeMAC.mac1Key(responderStatic: try $0.x25519()) }
        if valid && remote == nil { throw ValidationError("--valid needs --mac1-pk") }
        let fd = try HostileSocket.udp(for: to)
        defer { HostileSocket.close(fd) }
        let start = HostileSocket.now()
        var sent = 0, refused = 0, replies = 0, cookieReplies = 0
        func countReplies() {
            for size in HostileSocket.drain(fd) {
                replies += 1
                if size == SudphLayout.cookieReplyPacketSize { cookieReplies += 1 }
            }
        }
        while sent < total {
            let elapsed = HostileSocket.now() - start
            if elapsed >= seconds { break }
            // Send what is due by now, then sleep a millisecond.
            let due = min(total, Int(elapsed * Double(rate)) + 1)
            while sent < due {
                if valid, let remote {
                    let packet = try HostileHandshake.message1(from: KeyPair.generate(), to: remote, transport: .sudph, wire: wire)
                    if !HostileSocket.send(fd, packet, to: to) { refused += 1 }
                    sent += 1
                    continue
                }
                var packet = SecureRandom.bytes(sizeList[sent % sizeList.count])
                packet[0] = SudphPacketType.initiation.rawValue
                packet[1] = 0; packet[2] = 0; packet[3] = 0
                if let mac1Key, packet.count == SudphLayout.initiationPacketSize {
                    packet.replaceSubrange(SudphLayout.mac1Offset..<SudphLayout.mac2Offset,
                                           with: HandshakeMAC.mac(key: mac1Key, Array(packet[0..<SudphLayout.mac1Offset])))
                    packet.replaceSubrange(SudphLayout.mac2Offset..., with: [UInt8](repeating: 0, count: SudphLayout.macSize))
                }
                if !HostileSocket.send(fd, packet, to: to) { refused += 1 }
                sent += 1
            }
            countReplies()
            HostileSocket.sleep(seconds: 0.001)
        }
        HostileSocket.sleep(seconds: 0.2)
        countReplies()
        let elapsed = HostileSocket.now() - start
        print("{\"sent\":\(sent),\"send_errors\":\(refused),\"replies\":\(replies),\"cookie_replies\":\(cookieReplies),"
              + "\"elapsed_s\":\((elapsed * 100).rounded() / 100)}")
    }
}
