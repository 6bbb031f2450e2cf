import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import SkywireCrypto
import SkywireWire

/// `dmsg-impersonate`: connects to a relay `--attempts` times presenting someone else's key
/// (`--as PK`, e.g. a visor's) in the stcpr handshake's identity claim, with a fresh Noise static
/// key of its own (without the victim's secret key nothing else can be sent: the IK `ss` DH needs
/// it). A relay that answered message 2 would have registered the impostor as `--as`. Prints one
/// JSON line: attempts, answered (must be 0), closed by the relay. `--honest` claims the tool's
/// own key instead (the control: that one is answered).
struct DmsgImpersonate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dmsg-impersonate",
        abstract: "Register at a dmsg relay under someone else's key (bounded; must be refused).")

    @OptionGroup var target: DmsgRelayOptions
    @Option(name: .customLong("as"), help: "The key to claim (hex).") var victim: String
    @Option(help: "Connections to try.") var attempts = 3
    @Flag(help: "Claim the tool's own key (control run).") var honest = false

    /// How long to wait for the relay's message 2 or its close.
    static let answerTimeoutSeconds = 3

    func run() throws {
        let relayKey = try target.relayKey
        let claimed = try PublicKey(hex: victim)
        let address = try HostileStcpr.address(target.addr)
        var answered = 0, closed = 0, silent = 0
        for _ in 0..<max(1, min(attempts, 100)) {
            let own = KeyPair.generate()
            let fd = try HostileStcpr.connect(address)
            defer { Glibc.close(fd) }
            var tv = timeval(tv_sec: Self.answerTimeoutSeconds, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            try HostileStcpr.sendAll(fd, try Self.message1(from: own, claiming: honest ? own.publicKey : claimed, to: relayKey))
            var header = [UInt8](repeating: 0, count: 2)
            do {
                try HostileStcpr.readExactly(fd, &header)
                answered += 1
            } catch HostileStcpr.Failure.closed {
                closed += 1
            } catch {
                silent += 1
            }
        }
        print(#"{"claimed":"\#(honest ? "own" : claimed.hex)","attempts":\#(answered + closed + silent),"answered":\#(answered),"closed":\#(closed),"silent":\#(silent)}"#)
    }

    /// stcpr message 1 (PROTOCOL.md §2, §3) from `keys`'s Noise static key whose identity claim
    /// names `claimed`, with mac1 for `relay`: one length-prefixed record.
    static func message1(from keys: KeyPair, claiming claimed: PublicKey, to relay: PublicKey) throws -> [UInt8] {
        let hs = try NoiseHandshake.ikInitiator(identity: keys, remote: relay)
        let message = try hs.writeMessage(payload: IdentityClaim.encode(claimed, timestamp: .now()))
        let mac1 = HandshakeMAC.mac(key: HandshakeMAC.mac1Key(responderStatic: try relay.x25519()), message)
        return HostileHandshake.lengthPrefixed(message + mac1)
    }
}
