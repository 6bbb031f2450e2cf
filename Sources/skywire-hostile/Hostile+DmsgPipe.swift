import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import SkywireCrypto
import SkywireDmsg
import SkywireIO
import SkywireTransport

/// `dmsg-pipe`: an honest dmsg client for the relay tests (not an attack). `echo` keeps a
/// session, prints `{"pk": …}` once established and echoes every stream's bytes for
/// `--seconds`; `send` opens a stream to `--to`, writes `--bytes` pseudo-random bytes, reads
/// the echo and checks it byte for byte, then prints one JSON line (bytes, seconds, Mbit/s).
struct DmsgPipe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dmsg-pipe",
        abstract: "An honest dmsg relay client: echo server or sender that checks the echo (test helper).")

    enum Mode: String, ExpressibleByArgument, CaseIterable { case echo, send }

    @OptionGroup var target: DmsgRelayOptions
    @Option(help: "echo or send.") var mode: Mode
    @Option(help: "send: the echoing client's key (hex).") var to: String?
    @Option(help: "send: bytes to send and check per stream.") var bytes = 1 << 20
    @Option(help: "send: streams to open one after the other (each sends --bytes and waits for the echo).") var streams = 1
    @Option(help: "Seconds before giving up (send) or stopping (echo).") var seconds = 30.0
    @Option(help: "A 32-byte key seed as one repeated byte 1...255 (0: a fresh key).") var seed = 0

    func run() throws {
        let keyPair = seed == 0 ? KeyPair.generate() : try KeyPair.fromSeed([UInt8](repeating: UInt8(clamping: seed), count: 32))
        let relayKey = try target.relayKey
        let (host, port) = try target.hostPort
        let destination = try to.map { try PublicKey(hex: $0) }
        if mode == .send && destination == nil { throw ValidationError("send needs --to") }
        let total = bytes
        let rounds = max(1, streams)
        let start = HostileStcpr.now()
        nonisolated(unsafe) var outcome = #"{"ok":false,"error":"timed out"}"#
        nonisolated(unsafe) var session: DmsgClientSession?
        let finished = try HostileDmsg.run(seconds: seconds) { loop, done in
            let hooks = DmsgClientSession.Hooks(
                incoming: { stream in
                    stream.onData = { stream.write($0) }
                    stream.onClosed = { _ in }
                    return true
                },
                established: {
                    // write(2), unbuffered: the test reads this line while the echo keeps running.
                    var line = Array(#"{"pk":"\#(keyPair.publicKey.hex)"}"#.utf8) + [0x0A]
                    _ = Glibc.write(1, &line, line.count)
                    guard let destination, let session else { return }
                    var round = 0
                    func next() {
                        session.open(to: destination) { result in
                            switch result {
                            case .failure(let error):
                                outcome = #"{"ok":false,"error":"open: \#(error)"}"#
                                done()
                            case .success(let stream):
                                Self.send(stream, total: total, start: start) { result in
                                    round += 1
                                    guard round < rounds, result.hasPrefix(#"{"ok":true"#) else {
                                        outcome = rounds == 1 ? result : Self.summary(result, rounds: round, start: start)
                                        return done()
                                    }
                                    next()
                                }
                            }
                        }
                    }
                    next()
                },
                closed: { reason in
                    outcome = #"{"ok":false,"error":"session closed: \#(reason)"}"#
                    done()
                })
            do {
                session = try DmsgClientSession(loop: loop, identity: keyPair, relay: relayKey, host: host, port: port,
                                                logger: HostileDmsg.logger, hooks: hooks)
            } catch {
                outcome = #"{"ok":false,"error":"\#(error)"}"#
                done()
            }
        }
        if mode == .echo && !finished { outcome = #"{"ok":true,"echoed_for":\#(seconds)}"# }
        print(outcome)
        if !outcome.hasPrefix(#"{"ok":true"#) { throw ExitCode(1) }
    }

    /// The result of `rounds` sequential streams: streams per second and the bytes of all.
    static func summary(_ last: String, rounds: Int, start: Double) -> String {
        guard last.hasPrefix(#"{"ok":true"#) else { return last }
        let seconds = HostileStcpr.now() - start
        return #"{"ok":true,"streams":\#(rounds),"seconds":\#((seconds * 1000).rounded() / 1000),"streams_per_s":\#((Double(rounds) / seconds * 10).rounded() / 10)}"#
    }

    /// Period of the test pattern (a prime, so it never lines up with chunk or frame sizes).
    static let period = 65521
    /// The test pattern: byte `i` is `table[i % period]` (a table twice the period, so any
    /// window up to a period long is one contiguous slice).
    static let table: [UInt8] = (0..<(2 * period)).map { UInt8(truncatingIfNeeded: (($0 % period) &* 2_654_435_761) >> 13) }

    /// Whether `data` equals the pattern from offset `at` on (memcmp(3) per period-long piece).
    static func matches(_ data: ByteBuffer, at: Int) -> Bool {
        data.withUnsafeReadableBytes { bytes in
            table.withUnsafeBytes { t in
                guard let data = bytes.baseAddress, let pattern = t.baseAddress else { return bytes.count == 0 }
                var done = 0
                while done < bytes.count {
                    let start = (at + done) % period
                    let n = min(period, bytes.count - done)
                    guard memcmp(data + done, pattern + start, n) == 0 else { return false }
                    done += n
                }
                return true
            }
        }
    }

    /// Writes `total` pattern bytes as the stream takes them and checks the echo.
    static func send(_ stream: DmsgStream, total: Int, start: Double, finish: @escaping (String) -> Void) {
        var sent = 0, received = 0
        var ended = false
        let chunk = 16 * 1024
        func fill() {
            while sent < total {
                let n = min(chunk, total - sent, period)
                let from = sent % period
                sent += n
                if !stream.write(ByteBuffer(bytes: table[from..<from + n])) { return }
            }
        }
        stream.onWritable = { fill() }
        stream.onData = { data in
            guard !ended else { return }
            guard matches(data, at: received) else {
                ended = true
                finish(#"{"ok":false,"error":"the echo differs in bytes \#(received)..<\#(received + data.readableBytes)"}"#)
                stream.close()
                return
            }
            received += data.readableBytes
            if received == total {
                ended = true
                let seconds = HostileStcpr.now() - start
                let mbps = Double(total) * 8 / seconds / 1e6
                finish(#"{"ok":true,"bytes":\#(total),"seconds":\#((seconds * 1000).rounded() / 1000),"mbit_s":\#((mbps * 10).rounded() / 10)}"#)
                stream.close()
            }
        }
        stream.onClosed = { reason in
            guard !ended else { return }
            ended = true
            finish(#"{"ok":false,"error":"stream closed after \#(received) bytes: \#(reason)"}"#)
        }
        fill()
    }
}
