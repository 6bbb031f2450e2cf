import NIOCore
import SkywireTestSupport
import XCTest
@testable import SkywireSocks

/// Seeded random inputs for the SOCKS5 parsers (RFC 1928 §3–§7, RFC 1929 §2): they never trap, and
/// an outcome does not depend on how the bytes were split into reads.
final class Socks5FuzzTests: XCTestCase {
    /// Mostly plausible dialogues with random damage: a greeting, maybe RFC 1929 credentials, a
    /// request with any ATYP, trailing bytes; in half of them 1–3 bytes replaced.
    private func dialogue(_ rng: inout SeededGenerator) -> [UInt8] {
        func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        var out: [UInt8] = []
        if Int.random(in: 0..<10, using: &rng) == 0 { return bytes(Int.random(in: 0...64, using: &rng)) }
        let methodChoices: [UInt8] = [0, 0, 2, 2, 1, 0x80, 0xFF]
        let methods = (0..<Int.random(in: 0...4, using: &rng)).map { _ in methodChoices.randomElement(using: &rng)! }
        out += [5, UInt8(methods.count)] + methods
        if methods.contains(2) && Bool.random(using: &rng) {
            let right = Bool.random(using: &rng)  // the credentials the test's server expects, or any
            let user = right ? Array("u".utf8) : bytes(Int.random(in: 0...8, using: &rng))
            let pass = right ? Array("p".utf8) : bytes(Int.random(in: 0...8, using: &rng))
            out += [1, UInt8(user.count)] + user + [UInt8(pass.count)] + pass
        }
        let atyps: [UInt8] = [1, 1, 3, 4, 0, 9], commands: [UInt8] = [1, 1, 1, 3, 2, 0, 7]
        let atyp = atyps.randomElement(using: &rng)!
        out += [5, commands.randomElement(using: &rng)!, 0, atyp]
        switch atyp {
        case 1: out += bytes(4)
        case 4: out += bytes(16)
        case 3: let n = Int.random(in: 0...20, using: &rng); out += [UInt8(n)] + (0..<n).map { _ in UInt8.random(in: 0x61...0x7A, using: &rng) }
        default: out += bytes(Int.random(in: 0...6, using: &rng))
        }
        out += bytes(2) + bytes(Int.random(in: 0...4, using: &rng))
        if Bool.random(using: &rng) {
            for _ in 0..<Int.random(in: 1...3, using: &rng) { out[Int.random(in: out.indices, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
        }
        return out
    }

    /// Cuts `input` into 1–4 random reads.
    private func chunks(_ input: [UInt8], _ rng: inout SeededGenerator) -> [[UInt8]] {
        guard input.count > 1 else { return [input] }
        let cuts = Set((0..<Int.random(in: 0...3, using: &rng)).map { _ in Int.random(in: 1..<input.count, using: &rng) }).sorted()
        var parts: [[UInt8]] = [], start = 0
        for cut in cuts + [input.count] { parts.append(Array(input[start..<cut])); start = cut }
        return parts
    }

    /// Runs the server handshake over `parts`; the output so far and the first outcome that is not
    /// `needMoreData` (with the pipelined bytes and whatever came after in later reads).
    private func runHandshake(_ auth: Socks5ServerHandshake.Authentication, _ parts: [[UInt8]])
        -> (output: [UInt8], outcome: String) {
        var hs = Socks5ServerHandshake(authentication: auth)
        var output: [UInt8] = []
        for (i, part) in parts.enumerated() {
            let step = hs.receive(ByteBuffer(bytes: part))
            output += step.output.readableBytesView
            switch step.outcome {
            case .needMoreData:
                continue
            case .request(let request, let pipelined):
                XCTAssertTrue(hs.isFinished)
                let rest = Array(pipelined.readableBytesView) + parts[(i + 1)...].flatMap { $0 }
                return (output, "request \(request) then \(rest)")
            case .failed:
                // A failure answers with at most a method refusal, an auth status or a request reply.
                XCTAssertLessThanOrEqual(step.output.readableBytes, 22)
                return (output, "failed")
            }
        }
        return (output, "needMoreData")
    }

    func testServerHandshakeOutcomeDoesNotDependOnReadBoundaries() {
        var rng = SeededGenerator(seed: 0x5EED_0001)
        let auths: [Socks5ServerHandshake.Authentication] = [
            .none, .acceptAnything, .usernamePassword(Socks5Credentials(username: Array("u".utf8), password: Array("p".utf8))),
        ]
        var outcomes: [String: Int] = [:]
        for _ in 0..<3000 {
            let input = dialogue(&rng)
            let auth = auths.randomElement(using: &rng)!
            let whole = runHandshake(auth, [input])
            let split = runHandshake(auth, chunks(input, &rng))
            XCTAssertEqual(split.output, whole.output, "input \(input)")
            XCTAssertEqual(split.outcome, whole.outcome, "input \(input)")
            outcomes[String(whole.outcome.prefix(7)), default: 0] += 1
        }
        // The generator reaches every outcome, so the property is checked on each of them.
        XCTAssertGreaterThan(outcomes["request", default: 0], 100, "\(outcomes)")
        XCTAssertGreaterThan(outcomes["failed", default: 0], 100, "\(outcomes)")
        XCTAssertGreaterThan(outcomes["needMor", default: 0], 10, "\(outcomes)")
    }

    func testUDPHeaderParseRoundTripsWhatItAccepts() {
        var rng = SeededGenerator(seed: 0x5EED_0002)
        var accepted = 0
        for _ in 0..<5000 {
            var input = [0, 0, 0] + dialogue(&rng).suffix(Int.random(in: 0...30, using: &rng))
            let atyps: [UInt8] = [1, 3, 4]
            if input.count > 3 && Bool.random(using: &rng) { input[3] = atyps.randomElement(using: &rng)! }
            guard case .success(let (header, length)) = Socks5UDPHeader.parse(ByteBuffer(bytes: input)) else { continue }
            accepted += 1
            var encoded = ByteBuffer()
            header.write(to: &encoded)
            XCTAssertEqual(length, header.encodedLength)
            XCTAssertEqual(Array(encoded.readableBytesView), Array(input[..<length]), "input \(input)")
        }
        XCTAssertGreaterThan(accepted, 500)
    }

    func testSnooperForwardsTheSameBytesWhateverTheReadBoundaries() {
        var rng = SeededGenerator(seed: 0x5EED_0003)
        for _ in 0..<2000 {
            let input = dialogue(&rng)
            let local = Bool.random(using: &rng)
            func run(_ parts: [[UInt8]]) -> [UInt8] {
                var snooper = Socks5DialogueSnooper(answerNoAuthLocally: local)
                return parts.flatMap { Array(snooper.clientBytes(ByteBuffer(bytes: $0)).readableBytesView) }
            }
            XCTAssertEqual(run(chunks(input, &rng)), run([input]), "input \(input)")
        }
    }
}
