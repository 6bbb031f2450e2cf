// The config parser (Sources/SkywireConfig/JSONParser.swift, VisorConfig+Decoding.swift, HostPort.swift).
// Invariants: a syntax error points inside the text (line and column from 1); a JSON text that
// parses is written by prettyPrinted as text that parses to the same value (members sorted) and is
// written again identically; a config that parses validates clean,
// and its written form parses back to an equal config and is written again identically; problem
// messages never echo the `sk` value; a HOST:PORT that parses is written as text that parses to it.
import FuzzSupport
import SkywireConfig
import SkywireCrypto

/// Members sorted (by name, then by written value) at every level: equal for documents that differ only in member order.
func canonical(_ v: JSONValue) -> JSONValue {
    switch v {
    case .array(let items): return .array(items.map(canonical))
    case .object(let members):
        let sorted = members.map { JSONValue.Member(name: $0.name, value: canonical($0.value)) }
            .map { (Array($0.name.utf8), $0.value.prettyPrinted(), $0) }
            .sorted { $0.0 != $1.0 ? $0.0.lexicographicallyPrecedes($1.0) : $0.1 < $1.1 }
        return .object(sorted.map { $0.2 })
    default: return v
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafeRawPointer?, _ size: Int) -> CInt {
    let bytes = FuzzInput(data, size).bytes
    let json: JSONValue
    do { json = try JSONParser.parse(bytes) } catch {
        let lines = bytes.reduce(1) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
        invariant(error.line >= 1 && error.line <= lines && error.column >= 1 && error.column <= bytes.count + 1,
                  "syntax error at line \(error.line), column \(error.column) of a \(lines)-line, \(bytes.count)-byte text")
        return 0
    }
    let text = json.prettyPrinted()
    let again: JSONValue
    do { again = try JSONParser.parse(text) } catch {
        invariant(false, "prettyPrinted text does not parse (\(error)): \(text.prefix(300))")
        return 0
    }
    invariant(canonical(again) == canonical(json), "prettyPrinted changed the document: \(text.prefix(300))")
    invariant(again.prettyPrinted() == text, "prettyPrinted is not stable")

    if case .object(let members) = json {
        for m in members where m.name == "port" || m.name == "public_addr" || m.name == "listen" {
            if case .string(let s) = m.value, case .success(let hp) = HostPort.parse(s) {
                invariant(HostPort.parse(hp.description) == .success(hp), "HOST:PORT \(s) written as \(hp.description)")
            }
        }
    }

    switch Result(catching: { () throws(ConfigError) in try VisorConfig.parse(bytes: bytes) }) {
    case .success(let config):
        invariant(config.validate().isEmpty, "a parsed config does not validate: \(config.validate())")
        let written = config.jsonText()
        let back = Result(catching: { () throws(ConfigError) in try VisorConfig.parse(written) })
        invariant((try? back.get()) == config, "config written as text that parses differently: \(back)")
        invariant((try? back.get())?.jsonText() == written, "config text is not stable")
    case .failure(.invalid(let problems)):
        invariant(!problems.isEmpty, "invalid without problems")
        if case .object(let members) = json {
            for m in members where m.name == "sk" {
                // Only an sk text that appears once in the input: other fields may legitimately quote the same text.
                guard case .string(let sk) = m.value, sk.utf8.count >= 16, occurrences(of: Array(sk.utf8), in: bytes) == 1 else { continue }
                for p in problems {
                    invariant(!p.description.contains(sk), "a problem message echoes the sk value: \(p.path)")
                }
            }
        }
    case .failure(let e):
        invariant(false, "JSON parsed but the config parser reported \(e)")
    }
    return 0
}

func occurrences(of needle: [UInt8], in haystack: [UInt8]) -> Int {
    guard !needle.isEmpty, haystack.count >= needle.count else { return 0 }
    return (0...(haystack.count - needle.count)).filter { haystack[$0..<$0 + needle.count].elementsEqual(needle) }.count
}

extension Result where Failure == ConfigError {
    init(catching body: () throws(ConfigError) -> Success) {
        do { self = .success(try body()) } catch { self = .failure(error) }
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    writeSeedsIfAsked {
        guard let own = try? KeyPair.fromSeed([UInt8](repeating: 1, count: 32)),
              let peer = try? KeyPair.fromSeed([UInt8](repeating: 2, count: 32)) else { fatalError("fromSeed") }
        let minimal = VisorConfig(keyPair: own)
        let full = VisorConfig(
            keyPair: own,
            transport: TransportConfig(stcprPort: 7777, sudphPort: 0, listenAddr: "::",
                                       peers: [peer.publicKey: PeerAddresses(stcpr: HostPort(host: "192.0.2.10", port: 7777),
                                                                             sudph: HostPort(host: "2001:db8::1", port: 7778))],
                                       discovery: "http://discovery.example:9090", country: "DE",
                                       publicAddr: HostPort(host: "203.0.113.5", port: 7777)),
            launcher: LauncherConfig(apps: [AppConfig(name: .vpnServer, args: ["--whitelist", peer.publicKey.hex], autoStart: true),
                                            AppConfig(name: .skysocks, args: ["--secure"], port: 3)]),
            cliAddr: "/run/skywire/cli.sock", logLevel: .debug, stateDir: "/var/lib/skywire")
        return [
            ("config-minimal.json", Array(minimal.jsonText().utf8)),
            ("config-full.json", Array(full.jsonText().utf8)),
            ("json-values.json", Array(#"[null, true, false, -0, 1.5e-3, 12345678901234567890, "\u00e9\n\"", {"a": [], "a": {}}]"#.utf8)),
            ("json-nested.json", Array((String(repeating: "[", count: 40) + String(repeating: "]", count: 40)).utf8)),
            ("json-bom.json", [0xEF, 0xBB, 0xBF] + Array(#"{"port": "[2001:db8::1]:443"}"#.utf8)),
        ]
    }
    return 0
}

@_cdecl("fuzz_config_main")
public func main(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt { runFuzzer(argc, argv) }
