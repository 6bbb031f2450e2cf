import SkywireConfig
import SkywireCrypto
import SkywireWire

/// The state file `<state_dir>/skychat.json` (docs/skychat.md "State"): the store as JSON,
/// written whole with `AtomicFile` (a reader sees the old file or the new one).
extension ChatStore {
    /// The file's format version.
    static let stateVersion: Int64 = 1
    static let stateFileName = "skychat.json"
    /// The largest state file read: the history's bound with JSON escaping (\uXXXX is 6 bytes a byte), and the queue.
    static let maxStateFileBytes = 64 << 20

    /// The store as the state file's JSON value.
    var snapshot: ControlValue {
        let convs: [ControlValue] = conversations.values.sorted { $0.id < $1.id }.map { c in
            .object([
                "id": .string(c.id), "unread": .int(Int64(c.unread)), "last_activity_ms": .int(c.lastActivity),
                "messages": .array(c.entries.map { e in
                    .object(["id": .string(Self.hex(e.id)), "from": .string(e.from), "time_ms": .int(e.timeMillis),
                             "text": .string(e.text), "outgoing": .bool(e.outgoing), "pending": .int(Int64(e.pending))])
                }),
            ])
        }
        let groupRows: [ControlValue] = groups.values.sorted { $0.id < $1.id }.map { g in
            .object(["id": .string(Self.hex(g.id)), "name": .string(g.name), "members": .array(g.members.map { .string($0) }),
                     "local": .bool(g.local)])
        }
        let queue: [ControlValue] = outbox.map { o in
            var row: [String: ControlValue] = [
                "peer": .string(o.peer), "conversation": .string(o.conversation), "id": .string(Self.hex(o.message.id)),
                "time_ms": .int(Int64(clamping: o.message.timeMillis)), "text": .string(o.message.text),
            ]
            if let g = o.message.group { row["group"] = .object(["id": .string(Self.hex(g.id)), "name": .string(g.name)]) }
            return .object(row)
        }
        return .object([
            "version": .int(Self.stateVersion), "conversations": .array(convs), "groups": .array(groupRows), "outbox": .array(queue),
            "allowed": .array(allowed.sorted().map { .string($0) }), "blocked": .array(blocked.sorted().map { .string($0) }),
        ])
    }

    /// A store from the state file's JSON value. Items that do not parse are skipped (a damaged
    /// entry must not cost the rest of the history); the bounds of `limits` hold.
    init(restoring value: ControlValue, limits: ChatLimits) throws(ChatStoreError) {
        self.init(limits: limits)
        guard let root = value.objectValue else { throw ChatStoreError(.invalid, "not a JSON object") }
        guard root["version"]?.intValue == Self.stateVersion else {
            throw ChatStoreError(.invalid, "state version \(root["version"]?.intValue.map(String.init) ?? "missing"), expected \(Self.stateVersion)")
        }
        for g in root["groups"]?.arrayValue ?? [] {
            guard let id = g["id"]?.stringValue.flatMap(Self.id), let name = g["name"]?.stringValue else { continue }
            let members = (g["members"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(Self.key) }
            restore(group: ChatGroup(id: id, name: name, members: members, local: g["local"]?.boolValue ?? false))
        }
        for c in root["conversations"]?.arrayValue ?? [] {
            guard let id = c["id"]?.stringValue, Self.key(id) != nil || Self.groupID(conversation: id) != nil else { continue }
            let entries = (c["messages"]?.arrayValue ?? []).compactMap { m -> ChatEntry? in
                guard let mid = m["id"]?.stringValue.flatMap(Self.id), let from = m["from"]?.stringValue.flatMap(Self.key),
                      let time = m["time_ms"]?.intValue, let text = m["text"]?.stringValue, ChatProtocol.textProblem(text) == nil else { return nil }
                let outgoing = m["outgoing"]?.boolValue ?? false
                return ChatEntry(id: mid, from: from, timeMillis: time, text: text, outgoing: outgoing,
                                 pending: outgoing ? Int(clamping: max(0, m["pending"]?.intValue ?? 0)) : 0)
            }
            restore(conversation: id, entries: entries, unread: Int(clamping: c["unread"]?.intValue ?? 0),
                    lastActivity: c["last_activity_ms"]?.intValue ?? 0)
        }
        for o in root["outbox"]?.arrayValue ?? [] {
            guard let peer = o["peer"]?.stringValue.flatMap(Self.key), let conversation = o["conversation"]?.stringValue,
                  let id = o["id"]?.stringValue.flatMap(Self.id), let time = o["time_ms"]?.intValue, let text = o["text"]?.stringValue else { continue }
            var group: ChatGroupRef?
            if let g = o["group"], let gid = g["id"]?.stringValue.flatMap(Self.id), let name = g["name"]?.stringValue {
                group = ChatGroupRef(id: gid, name: name)
            }
            restore(outgoing: ChatOutgoing(peer: peer, conversation: conversation,
                                           message: ChatWireMessage(id: id, timeMillis: UInt64(clamping: time), group: group, text: text)))
        }
        restore(allowed: (root["allowed"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(Self.key) },
                blocked: (root["blocked"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(Self.key) })
    }

    /// 16 hex digits.
    static func hex(_ id: UInt64) -> String { String(conversationID(group: id).dropFirst()) }

    private static func id(_ text: String) -> UInt64? { text.utf8.count == 16 ? UInt64(text, radix: 16) : nil }

    /// `text` when it is a key in canonical hex.
    static func key(_ text: String) -> String? { (try? PublicKey(hex: text))?.hex == text ? text : nil }
}
