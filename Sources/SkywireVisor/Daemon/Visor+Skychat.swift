import SkywireConfig
import SkywireCrypto

extension VisorOptions {
    /// `specs` with a `skychat` entry (port 1, not auto-started, closed) when the config has
    /// none, so `skywire cli skychat ...` works on every visor (docs/skychat.md).
    static func withSkychat(_ specs: [AppSpec]) -> [AppSpec] { withEntry(.skychat, specs) }
}

extension Visor {
    /// `skychat.*` (docs/skychat.md, docs/cli.md): the `skychat` app's conversations, groups and
    /// lists; the first call starts the app when it is not running (with its config arguments).
    /// The UI's chat page calls the same methods.
    func skychatControl(_ method: String, _ params: [String: ControlValue]) async throws -> ControlValue {
        let app = try await skychat()
        do {
            switch method {
            case "skychat.send":
                let to = try Self.conversationID(params.requiredString("to"))
                let wait = try params.optionalInt("wait") ?? ChatApp.defaultSendWaitSeconds
                guard (0...ChatApp.maxSendWaitSeconds).contains(wait) else {
                    throw ControlError(.badRequest, "wait must be in 0...\(ChatApp.maxSendWaitSeconds) s, not \(wait)")
                }
                return try await app.send(to: to, text: params.requiredString("text"), wait: wait)
            case "skychat.ls":
                return .array(app.conversationRows())
            case "skychat.show":
                var limit = Int64(ChatLimits().maxEntriesPerConversation)
                if let v = params["limit"], v != .null {
                    // From the UI's query string the limit is text.
                    guard let n = v.intValue ?? v.stringValue.flatMap({ Int64($0) }), n > 0 else {
                        throw ControlError(.badRequest, "limit must be a positive number")
                    }
                    limit = n
                }
                return try app.conversation(Self.conversationID(params.requiredString("id")), limit: Int(clamping: limit),
                                            markRead: params.optionalBool("mark_read") ?? true)
            case "skychat.read":
                app.markRead(try Self.conversationID(params.requiredString("id")))
                return .object([:])
            case "skychat.group.create":
                let members = try Self.keyList(params.optionalString("members") ?? "")
                return try app.createGroup(name: params.requiredString("name"), members: members)
            case "skychat.group.add":
                return try app.addMember(Self.publicKey(params.requiredString("pk")).hex, to: params.requiredString("group"))
            case "skychat.group.ls":
                return .array(app.groupRows())
            case "skychat.allow", "skychat.disallow", "skychat.block", "skychat.unblock":
                let key = try Self.publicKey(params.requiredString("pk")).hex
                let blocked = method.hasSuffix("block")
                return try app.setListed(key, blocked: blocked, on: method == "skychat.allow" || method == "skychat.block")
            case "skychat.access":
                return app.accessRow()
            default:
                throw ControlError(.badRequest, "unknown method \"\(method)\"")
            }
        } catch let e as ChatStoreError {
            switch e.kind {
            case .full: throw ControlError(.conflict, e.message)
            case .notFound: throw ControlError(.notFound, e.message)
            case .invalid: throw ControlError(.badRequest, e.message)
            }
        }
    }

    /// A key (lower-cased) or a group id (`g` + 16 hex) as the store names conversations.
    static func conversationID(_ text: String) throws -> String {
        let t = text.lowercased()
        if ChatStore.groupID(conversation: t) != nil { return t }
        return try publicKey(t).hex
    }

    /// Comma- or space-separated keys.
    static func keyList(_ text: String) throws -> [String] {
        try text.split(whereSeparator: { $0 == "," || $0 == " " }).map { try publicKey(String($0).lowercased()).hex }
    }

    /// The running `skychat` app, started with its config arguments when it is not.
    private func skychat() async throws -> ChatApp {
        let name = AppName.skychat.rawValue
        if let app = apps.app(named: name) as? ChatApp { return app }
        // A conflict: started by a concurrent request meanwhile. (No `catch where` on this typed
        // throw: swiftc 6.2.3 crashed in SIL verification on it, see Visor.skynet().)
        var failure: AppError?
        do {
            try await apps.start(name)
        } catch {
            failure = error
        }
        if let failure, failure.code != .conflict { throw failure }
        guard let app = apps.app(named: name) as? ChatApp else { throw ControlError(.unavailable, "the skychat app is not running") }
        return app
    }
}
