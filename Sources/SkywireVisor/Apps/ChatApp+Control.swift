import SkywireConfig
import SkywireCrypto
import SkywireWire

/// What `skywire cli skychat` and the UI's chat page read and change (docs/skychat.md,
/// docs/cli.md): the control methods `skychat.*` call these (`Visor+Skychat.swift`).
extension ChatApp {
    /// `skychat.ls`: the conversations, most recent first, with unread and queued counts.
    func conversationRows() -> [ControlValue] {
        lock.withLock {
            store.conversations.values.sorted { ($0.lastActivity, $0.id) > ($1.lastActivity, $1.id) }.map { c in
                var row = header(c.id)
                let last = c.entries.last
                row["unread"] = .int(Int64(c.unread))
                row["messages"] = .int(Int64(c.entries.count))
                row["queued"] = .int(Int64(c.entries.reduce(0) { $0 + $1.pending }))
                row["last_time_ms"] = last.map { .int($0.timeMillis) } ?? .null
                row["last_text"] = last.map { .string(String($0.text.prefix(Self.previewCharacters))) } ?? .null
                return .object(row)
            }
        }
    }

    /// `skychat.show`: one conversation's messages (the last `limit`), marked read unless
    /// `markRead` is false (the UI's GET; it marks them read with `skychat.read`, a POST).
    func conversation(_ id: String, limit: Int, markRead: Bool) throws(ChatStoreError) -> ControlValue {
        try locked { () throws(ChatStoreError) -> ControlValue in
            let c = store.conversations[id]
            let isGroup = ChatStore.groupID(conversation: id).flatMap { store.groups[$0] } != nil
            guard c != nil || isGroup || ChatStore.key(id) != nil else { throw ChatStoreError(.notFound, "no conversation \(id) (skychat ls)") }
            var row = header(id)
            row["messages"] = .array((c?.entries.suffix(limit) ?? []).map { e in
                .object(["id": .string(ChatStore.hex(e.id)), "from": .string(e.from), "time_ms": .int(e.timeMillis), "text": .string(e.text),
                         "outgoing": .bool(e.outgoing),
                         "state": .string(e.outgoing ? (e.pending == 0 ? "delivered" : "queued") : "received")])
            })
            row["unread"] = .int(Int64(c?.unread ?? 0))
            if markRead { store.markRead(id) }
            return .object(row)
        }
    }

    /// `skychat.read`: the conversation's messages marked read.
    func markRead(_ id: String) {
        lock.withLock { store.markRead(id) }
        scheduleSave()
    }

    /// `skychat.group.create`: a new group of `members`, with a random id.
    func createGroup(name: String, members: [String]) throws(ChatStoreError) -> ControlValue {
        let id = UInt64.random(in: 1...UInt64.max)
        try locked { () throws(ChatStoreError) in try store.createGroup(id: id, name: name, members: members, localKey: localKey) }
        scheduleSave()
        return groupRow(id)
    }

    func addMember(_ key: String, to conversation: String) throws(ChatStoreError) -> ControlValue {
        guard let id = ChatStore.groupID(conversation: conversation) else { throw ChatStoreError(.invalid, "\(conversation) is not a group id (g + 16 hex)") }
        try locked { () throws(ChatStoreError) in try store.addMember(key, toGroup: id, localKey: localKey) }
        scheduleSave()
        return groupRow(id)
    }

    func groupRows() -> [ControlValue] {
        let ids = lock.withLock { store.groups.keys.sorted() }
        return ids.map(groupRow)
    }

    private func groupRow(_ id: UInt64) -> ControlValue {
        lock.withLock {
            guard let g = store.groups[id] else { return .null }
            return .object(["id": .string(g.conversationID), "name": .string(g.name), "members": .array(g.members.map { .string($0) }),
                            "created_here": .bool(g.local)])
        }
    }

    /// `skychat.allow` / `skychat.block` (`on` false: undo).
    func setListed(_ key: String, blocked: Bool, on: Bool) throws(ChatStoreError) -> ControlValue {
        guard key != localKey else { throw ChatStoreError(.invalid, "that is this visor's own key") }
        try locked { () throws(ChatStoreError) in
            if blocked { try store.setBlocked(key, on) } else { try store.setAllowed(key, on) }
        }
        scheduleSave()
        return accessRow()
    }

    /// `skychat.access`: whom the app admits.
    func accessRow() -> ControlValue {
        lock.withLock {
            .object([
                "access": .string(store.allowed.isEmpty ? options.whitelist.access : (options.whitelist == .anyone ? "open" : "listed")),
                "whitelist": options.whitelist == .anyone ? .string(AppWhitelist.anyToken) : .array(options.whitelist.sortedKeys.map { .string($0.hex) }),
                "allowed": .array(store.allowed.sorted().map { .string($0) }),
                "blocked": .array(store.blocked.sorted().map { .string($0) }),
            ])
        }
    }

    func status() -> AppStatusReport {
        lock.withLock {
            let unread = store.conversations.values.reduce(0) { $0 + $1.unread }
            let c = counters
            return AppStatusReport(detail: "\(store.conversations.count) conversations, \(unread) unread, \(store.outbox.count) queued", fields: [
                "conversations": .int(Int64(store.conversations.count)), "unread": .int(Int64(unread)),
                "queued": .int(Int64(store.outbox.count)), "history_bytes": .int(Int64(store.historyBytes)),
                "received": .int(Int64(c.received)), "delivered": .int(Int64(c.delivered)), "duplicates": .int(Int64(c.duplicates)),
                "rate_limited": .int(Int64(c.rateLimited)), "refused_strangers": .int(Int64(c.refusedStrangers)),
                "refused_blocked": .int(Int64(c.refusedBlocked)), "malformed": .int(Int64(c.malformed)), "busy": .int(Int64(c.busy)),
                "deliveries": .array(deliveries.sorted { $0.key < $1.key }.map { peer, d in
                    .object(["pk": .string(peer), "queued": .int(Int64(store.queuedPerPeer[peer] ?? 0)),
                             "last_error": d.lastError.map { .string($0) } ?? .null])
                }),
            ])
        }
    }

    /// Characters of the last message `skychat ls` shows.
    static let previewCharacters = 80

    /// `id`, `kind` and `name` of a conversation (under `lock`).
    private func header(_ id: String) -> [String: ControlValue] {
        if let gid = ChatStore.groupID(conversation: id) {
            let g = store.groups[gid]
            return ["id": .string(id), "kind": .string("group"), "name": g.map { .string($0.name) } ?? .null,
                    "members": .array((g?.members ?? []).map { .string($0) })]
        }
        return ["id": .string(id), "kind": .string("direct"), "name": .string(id)]
    }
}
