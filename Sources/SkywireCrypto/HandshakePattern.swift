/// A Noise handshake token (Noise spec rev. 34 §7.1, §9).
public enum NoiseToken: String, Sendable, Equatable {
    case e, s, ee, es, se, ss, psk
}

/// A handshake pattern (§7): pre-messages and message patterns. Message 0 is sent by the
/// initiator and directions alternate (§7.1 requires it).
public struct HandshakePattern: Sendable, Equatable {
    /// The full pattern name with modifiers, e.g. `IK`, `XXpsk3`, `NNpsk0+psk2`.
    public let name: String
    public let initiatorPreMessage: [NoiseToken]
    public let responderPreMessage: [NoiseToken]
    public let messages: [[NoiseToken]]

    /// True when a `psk` token occurs (§9: then `e` also calls MixKey).
    public var isPSK: Bool { messages.contains { $0.contains(.psk) } }

    /// How many pre-shared keys the pattern consumes.
    public var pskCount: Int { messages.reduce(0) { $0 + $1.filter { $0 == .psk }.count } }

    /// One-way patterns (§7.4) have a single initiator message.
    public var isOneWay: Bool { Self.oneWayNames.contains(baseName) }

    /// The name without modifiers.
    public var baseName: String { String(name.prefix { !$0.isLowercase }) }

    /// A pattern by name: a fundamental (§7.4, §7.5) or deferred (§7.6) pattern, optionally with
    /// `psk<N>` modifiers joined by `+` (§9.4). Other modifiers (fallback, hfs) are unsupported.
    public static func named(_ name: String) throws -> HandshakePattern {
        let base = String(name.prefix { !$0.isLowercase })
        guard let text = patternTable[base] else { throw NoiseError.unsupported("handshake pattern \(base)") }
        var (initPre, respPre, messages) = try parse(text, name: base)
        let modifierText = name.dropFirst(base.count)
        if !modifierText.isEmpty {
            for modifier in modifierText.split(separator: "+", omittingEmptySubsequences: false) {
                guard modifier.hasPrefix("psk"), let index = Int(modifier.dropFirst(3)),
                      String(index) == modifier.dropFirst(3) else {
                    throw NoiseError.unsupported("pattern modifier \(modifier)")
                }
                guard index <= messages.count else {
                    throw NoiseError.unsupported("modifier \(modifier): pattern \(base) has \(messages.count) messages")
                }
                // psk0 goes at the start of the first message, pskN at the end of message N (§9.4).
                if index == 0 { messages[0].insert(.psk, at: 0) } else { messages[index - 1].append(.psk) }
            }
        }
        return HandshakePattern(name: name, initiatorPreMessage: initPre, responderPreMessage: respPre,
                                messages: messages)
    }

    /// Parses the spec's notation: `-> s` / `<- s` pre-message lines, `...`, then message lines
    /// starting with `->` (initiator) or `<-` (responder), alternating from the initiator.
    static func parse(_ text: String, name: String) throws
        -> (initiatorPre: [NoiseToken], responderPre: [NoiseToken], messages: [[NoiseToken]]) {
        let lines = text.split(separator: "\n").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
        let hasPre = lines.contains("...")
        var initPre: [NoiseToken] = []
        var respPre: [NoiseToken] = []
        var messages: [[NoiseToken]] = []
        var inPre = hasPre
        for line in lines {
            if line == "..." { inPre = false; continue }
            let fromInitiator: Bool
            if line.hasPrefix("->") { fromInitiator = true } else if line.hasPrefix("<-") { fromInitiator = false } else {
                throw NoiseError.unsupported("pattern \(name): bad line \(line)")
            }
            var tokens: [NoiseToken] = []
            for word in line.dropFirst(2).split(separator: ",") {
                guard let token = NoiseToken(rawValue: String(word).trimmingSpaces()) else {
                    throw NoiseError.unsupported("pattern \(name): bad token \(word)")
                }
                tokens.append(token)
            }
            if inPre {
                if fromInitiator { initPre += tokens } else { respPre += tokens }
            } else {
                guard fromInitiator == (messages.count % 2 == 0) else {
                    throw NoiseError.unsupported("pattern \(name): messages must alternate from the initiator")
                }
                messages.append(tokens)
            }
        }
        guard !messages.isEmpty else { throw NoiseError.unsupported("pattern \(name): no messages") }
        return (initPre, respPre, messages)
    }

    static let oneWayNames: Set<String> = ["N", "K", "X"]

    /// The patterns of Noise spec rev. 34: one-way (§7.4), interactive fundamental (§7.5) and
    /// deferred (§7.6), in the spec's notation.
    static let patternTable: [String: String] = [
        // §7.4 one-way
        "N": "<- s\n...\n-> e, es",
        "K": "-> s\n<- s\n...\n-> e, es, ss",
        "X": "<- s\n...\n-> e, es, s, ss",
        // §7.5 interactive
        "NN": "-> e\n<- e, ee",
        "NK": "<- s\n...\n-> e, es\n<- e, ee",
        "NX": "-> e\n<- e, ee, s, es",
        "XN": "-> e\n<- e, ee\n-> s, se",
        "XK": "<- s\n...\n-> e, es\n<- e, ee\n-> s, se",
        "XX": "-> e\n<- e, ee, s, es\n-> s, se",
        "KN": "-> s\n...\n-> e\n<- e, ee, se",
        "KK": "-> s\n<- s\n...\n-> e, es, ss\n<- e, ee, se",
        "KX": "-> s\n...\n-> e\n<- e, ee, se, s, es",
        "IN": "-> e, s\n<- e, ee, se",
        "IK": "<- s\n...\n-> e, es, s, ss\n<- e, ee, se",
        "IX": "-> e, s\n<- e, ee, se, s, es",
        // §7.6 deferred
        "NK1": "<- s\n...\n-> e\n<- e, ee, es",
        "NX1": "-> e\n<- e, ee, s\n-> es",
        "X1N": "-> e\n<- e, ee\n-> s\n<- se",
        "X1K": "<- s\n...\n-> e, es\n<- e, ee\n-> s\n<- se",
        "XK1": "<- s\n...\n-> e\n<- e, ee, es\n-> s, se",
        "X1K1": "<- s\n...\n-> e\n<- e, ee, es\n-> s\n<- se",
        "X1X": "-> e\n<- e, ee, s, es\n-> s\n<- se",
        "XX1": "-> e\n<- e, ee, s\n-> es, s, se",
        "X1X1": "-> e\n<- e, ee, s\n-> es, s\n<- se",
        "K1N": "-> s\n...\n-> e\n<- e, ee\n-> se",
        "K1K": "-> s\n<- s\n...\n-> e, es\n<- e, ee\n-> se",
        "KK1": "-> s\n<- s\n...\n-> e\n<- e, ee, se, es",
        "K1K1": "-> s\n<- s\n...\n-> e\n<- e, ee, es\n-> se",
        "K1X": "-> s\n...\n-> e\n<- e, ee, s, es\n-> se",
        "KX1": "-> s\n...\n-> e\n<- e, ee, se, s\n-> es",
        "K1X1": "-> s\n...\n-> e\n<- e, ee, s\n-> se, es",
        "I1N": "-> e, s\n<- e, ee\n-> se",
        "I1K": "<- s\n...\n-> e, es, s\n<- e, ee\n-> se",
        "IK1": "<- s\n...\n-> e, s\n<- e, ee, se, es",
        "I1K1": "<- s\n...\n-> e, s\n<- e, ee, es\n-> se",
        "I1X": "-> e, s\n<- e, ee, s, es\n-> se",
        "IX1": "-> e, s\n<- e, ee, se, s\n-> es",
        "I1X1": "-> e, s\n<- e, ee, s\n-> se, es",
    ]
}

/// A full protocol name (§8): `Noise_<pattern>_25519_ChaChaPoly_BLAKE2b` is the only suite here.
public struct NoiseProtocol: Sendable, Equatable {
    public static let dhName = "25519"
    public static let cipherName = "ChaChaPoly"
    public static let hashName = "BLAKE2b"

    public let name: String
    public let pattern: HandshakePattern

    public init(name: String) throws {
        let parts = name.split(separator: "_", omittingEmptySubsequences: false)
        guard parts.count == 5, parts[0] == "Noise" else { throw NoiseError.unsupported("protocol name \(name)") }
        guard parts[2] == Self.dhName, parts[3] == Self.cipherName, parts[4] == Self.hashName else {
            throw NoiseError.unsupported("suite \(parts[2])_\(parts[3])_\(parts[4]) in \(name)")
        }
        self.name = name
        self.pattern = try HandshakePattern.named(String(parts[1]))
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
