import SkywireWire

/// One message in a conversation's history.
struct ChatEntry: Sendable, Equatable {
    var id: UInt64
    /// The author's key (hex): a peer's, or this visor's for an outgoing message.
    var from: String
    /// Milliseconds since the Unix epoch: the sender's clock for received messages.
    var timeMillis: Int64
    var text: String
    var outgoing: Bool
    /// Outgoing: the recipients that have not acknowledged it yet (0: delivered to all).
    var pending: Int
    /// The order entries were added here (not the sender's clock, which a sender chooses): the
    /// lowest goes first when the whole history is over its bound.
    var sequence: UInt64 = 0

    /// What the entry counts against `ChatLimits.maxHistoryBytes`.
    var cost: Int { text.utf8.count + ChatLimits.entryOverhead }
}

/// A direct conversation (id: the peer's key) or a group's (id: `g` + 16 hex of the group id).
struct ChatConversation: Sendable, Equatable {
    let id: String
    var entries: [ChatEntry] = []
    var unread = 0
    /// When the last message arrived or left (ms): the least recent conversation goes first when there are too many.
    var lastActivity: Int64 = 0
}

/// A group: a name and member keys. Created here (`local`), or learned from a group message
/// another visor sent (its members: the ones heard from).
struct ChatGroup: Sendable, Equatable {
    let id: UInt64
    var name: String
    var members: [String]
    var local: Bool

    var conversationID: String { ChatStore.conversationID(group: id) }
}

/// A message waiting for one recipient's acknowledgement.
struct ChatOutgoing: Sendable, Equatable {
    var peer: String
    var conversation: String
    var message: ChatWireMessage
}

/// The bounds of the history, the queue and the lists (docs/skychat.md "Limits").
struct ChatLimits: Sendable, Equatable {
    var maxEntriesPerConversation = 200
    var maxHistoryBytes = 1 << 20
    var maxConversations = 256
    var maxQueuedPerPeer = 64
    var maxQueuedTotal = 1024
    var maxGroupMembers = 32
    var maxGroups = 64
    var maxListedKeys = 1024

    /// Bytes an entry costs beyond its text (id, key, time, flags as held).
    static let entryOverhead = 96
}

/// Why the store refused a change.
struct ChatStoreError: Error, Equatable, CustomStringConvertible {
    enum Kind: Sendable { case full, notFound, invalid }
    let kind: Kind
    let message: String
    init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    var description: String { message }
}

/// Skychat's state, pure (no I/O, no clock): the conversations with their bounded histories,
/// the groups, the queue of messages not yet acknowledged, and the allow and block lists.
/// `ChatApp` holds it under a lock and persists `snapshot` (docs/skychat.md).
struct ChatStore: Sendable, Equatable {
    let limits: ChatLimits
    private(set) var conversations: [String: ChatConversation] = [:]
    private(set) var groups: [UInt64: ChatGroup] = [:]
    /// In the order sent.
    private(set) var outbox: [ChatOutgoing] = []
    private(set) var queuedPerPeer: [String: Int] = [:]
    /// The sum of the entries' `cost`.
    private(set) var historyBytes = 0
    /// Keys admitted besides the app's `--whitelist` (`skychat allow`).
    private(set) var allowed: Set<String> = []
    /// Keys refused whatever the whitelist says (`skychat block`).
    private(set) var blocked: Set<String> = []
    /// The next entry's `sequence`.
    private(set) var nextSequence: UInt64 = 1

    init(limits: ChatLimits = ChatLimits()) { self.limits = limits }

    static func conversationID(group id: UInt64) -> String {
        let hex = String(id, radix: 16)
        return "g" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The group a conversation id names (`g` + 16 hex), nil for a key.
    static func groupID(conversation: String) -> UInt64? {
        guard conversation.utf8.count == 17, conversation.hasPrefix("g") else { return nil }
        return UInt64(conversation.dropFirst(), radix: 16)
    }

    // MARK: Sending

    /// Queues `message` for each of `peers` and adds it to `conversation`'s history with
    /// `pending` = the number of peers. All or nothing: refused when any peer's queue, or the
    /// whole queue, would go past its bound.
    mutating func enqueue(_ message: ChatWireMessage, to peers: [String], conversation: String, localKey: String) throws(ChatStoreError) {
        guard !peers.isEmpty else { throw ChatStoreError(.invalid, "the group has no other members yet: add one (skychat group add)") }
        if let full = peers.first(where: { queuedPerPeer[$0, default: 0] >= limits.maxQueuedPerPeer }) {
            throw ChatStoreError(.full, "queue full: \(limits.maxQueuedPerPeer) messages already wait for \(full); wait until it is reachable")
        }
        guard outbox.count + peers.count <= limits.maxQueuedTotal else {
            throw ChatStoreError(.full, "queue full: \(outbox.count) messages wait in total, at most \(limits.maxQueuedTotal)")
        }
        for peer in peers {
            outbox.append(ChatOutgoing(peer: peer, conversation: conversation, message: message))
            queuedPerPeer[peer, default: 0] += 1
        }
        append(ChatEntry(id: message.id, from: localKey, timeMillis: Int64(clamping: message.timeMillis), text: message.text,
                         outgoing: true, pending: peers.count), to: conversation, now: Int64(clamping: message.timeMillis), unread: false)
    }

    /// The first `limit` messages waiting for `peer`, oldest first.
    func queued(for peer: String, limit: Int) -> [ChatOutgoing] {
        Array(outbox.lazy.filter { $0.peer == peer }.prefix(limit))
    }

    /// The peers with messages waiting.
    var peersWithQueue: [String] { queuedPerPeer.keys.sorted() }

    /// `peer` acknowledged message `id`: off the queue, one fewer pending in the history.
    mutating func acknowledged(peer: String, id: UInt64) {
        guard let index = outbox.firstIndex(where: { $0.peer == peer && $0.message.id == id }) else { return }
        let item = outbox.remove(at: index)
        let left = queuedPerPeer[peer, default: 1] - 1
        queuedPerPeer[peer] = left > 0 ? left : nil
        if let e = conversations[item.conversation]?.entries.lastIndex(where: { $0.outgoing && $0.id == id }) {
            conversations[item.conversation]?.entries[e].pending -= 1
        }
    }

    // MARK: Receiving

    /// Files a message from `sender` (admitted by the caller). False: a repeat (the same id
    /// from the same sender is in the history already), nothing changed.
    mutating func receive(_ message: ChatWireMessage, from sender: String, now: Int64) -> Bool {
        var conversation = sender
        if let ref = message.group {
            conversation = Self.conversationID(group: ref.id)
            if var group = groups[ref.id] {
                // A group created here keeps its members; a learned one grows with whom it hears from.
                if !group.local, !group.members.contains(sender), group.members.count < limits.maxGroupMembers {
                    group.members.append(sender)
                    groups[ref.id] = group
                }
            } else if groups.count < limits.maxGroups {
                groups[ref.id] = ChatGroup(id: ref.id, name: ref.name, members: [sender], local: false)
            } else {
                conversation = sender  // no room for another group: filed as a direct message
            }
        }
        if conversations[conversation]?.entries.contains(where: { !$0.outgoing && $0.id == message.id && $0.from == sender }) == true {
            return false
        }
        append(ChatEntry(id: message.id, from: sender, timeMillis: Int64(clamping: message.timeMillis), text: message.text,
                         outgoing: false, pending: 0), to: conversation, now: now, unread: true)
        return true
    }

    mutating func markRead(_ conversation: String) {
        conversations[conversation]?.unread = 0
    }

    // MARK: Groups

    /// A new group created here; `id` is the caller's random choice.
    mutating func createGroup(id: UInt64, name: String, members: [String], localKey: String) throws(ChatStoreError) {
        if let problem = ChatProtocol.groupNameProblem(name) { throw ChatStoreError(.invalid, problem) }
        guard groups[id] == nil else { throw ChatStoreError(.invalid, "group id taken; try again") }
        guard groups.count < limits.maxGroups else { throw ChatStoreError(.full, "\(limits.maxGroups) groups already") }
        var unique: [String] = []
        for m in members where m != localKey && !unique.contains(m) { unique.append(m) }
        guard unique.count <= limits.maxGroupMembers else {
            throw ChatStoreError(.full, "\(unique.count) members, at most \(limits.maxGroupMembers)")
        }
        groups[id] = ChatGroup(id: id, name: name, members: unique, local: true)
    }

    mutating func addMember(_ key: String, toGroup id: UInt64, localKey: String) throws(ChatStoreError) {
        guard var group = groups[id] else { throw ChatStoreError(.notFound, "no group \(Self.conversationID(group: id))") }
        guard key != localKey, !group.members.contains(key) else { return }
        guard group.members.count < limits.maxGroupMembers else {
            throw ChatStoreError(.full, "the group has \(group.members.count) members, at most \(limits.maxGroupMembers)")
        }
        group.members.append(key)
        groups[id] = group
    }

    // MARK: Allow and block lists

    mutating func setAllowed(_ key: String, _ on: Bool) throws(ChatStoreError) {
        try Self.set(&allowed, key, on, limit: limits.maxListedKeys)
    }

    mutating func setBlocked(_ key: String, _ on: Bool) throws(ChatStoreError) {
        try Self.set(&blocked, key, on, limit: limits.maxListedKeys)
    }

    private static func set(_ list: inout Set<String>, _ key: String, _ on: Bool, limit: Int) throws(ChatStoreError) {
        guard on else { list.remove(key); return }
        guard list.contains(key) || list.count < limit else { throw ChatStoreError(.full, "\(limit) keys listed already") }
        list.insert(key)
    }

    // MARK: History bounds

    /// Adds `entry`, then drops the oldest entries until the conversation and the whole history
    /// are within their bounds, and the least recent conversation while there are too many.
    private mutating func append(_ entry: ChatEntry, to id: String, now: Int64, unread: Bool) {
        if conversations[id] == nil {
            while conversations.count >= limits.maxConversations, let oldest = leastRecentConversation(except: id) {
                dropConversation(oldest)
            }
        }
        var c = conversations[id] ?? ChatConversation(id: id)
        var entry = entry
        entry.sequence = nextSequence
        nextSequence += 1
        c.entries.append(entry)
        c.lastActivity = max(c.lastActivity, now)
        if unread { c.unread = min(c.unread + 1, limits.maxEntriesPerConversation) }
        historyBytes += entry.cost
        while c.entries.count > limits.maxEntriesPerConversation {
            historyBytes -= c.entries.removeFirst().cost
        }
        conversations[id] = c
        while historyBytes > limits.maxHistoryBytes, let victim = conversationWithOldestEntry() {
            historyBytes -= conversations[victim]?.entries.removeFirst().cost ?? 0
            if conversations[victim]?.entries.isEmpty == true { conversations[victim] = nil }
            clampUnread(victim)
        }
        clampUnread(id)
    }

    /// Unread is never more than the entries left.
    private mutating func clampUnread(_ id: String) {
        if let c = conversations[id], c.unread > c.entries.count { conversations[id]?.unread = c.entries.count }
    }

    private func leastRecentConversation(except id: String) -> String? {
        conversations.values.filter { $0.id != id }.min { ($0.lastActivity, $0.id) < ($1.lastActivity, $1.id) }?.id
    }

    private func conversationWithOldestEntry() -> String? {
        conversations.values.filter { !$0.entries.isEmpty }
            .min { $0.entries[0].sequence < $1.entries[0].sequence }?.id
    }

    private mutating func dropConversation(_ id: String) {
        historyBytes -= conversations[id]?.entries.reduce(0) { $0 + $1.cost } ?? 0
        conversations[id] = nil
    }
}

extension ChatStore {
    // MARK: Restoring (`ChatStore+State.swift` reads the state file through these: the bounds hold
    // for what a file brings as for what the network brings)

    /// Appends saved entries to a conversation, oldest first, then sets its unread count.
    mutating func restore(conversation id: String, entries: [ChatEntry], unread: Int, lastActivity: Int64) {
        for entry in entries { append(entry, to: id, now: lastActivity, unread: false) }
        if let count = conversations[id]?.entries.count { conversations[id]?.unread = max(0, min(unread, count)) }
    }

    /// A saved group; dropped past `maxGroups`, its members cut to `maxGroupMembers`.
    mutating func restore(group: ChatGroup) {
        guard groups[group.id] == nil, groups.count < limits.maxGroups, ChatProtocol.groupNameProblem(group.name) == nil else { return }
        var g = group
        g.members = Array(g.members.prefix(limits.maxGroupMembers))
        groups[g.id] = g
    }

    /// A saved queued message; dropped past the queue's bounds.
    mutating func restore(outgoing item: ChatOutgoing) {
        guard queuedPerPeer[item.peer, default: 0] < limits.maxQueuedPerPeer, outbox.count < limits.maxQueuedTotal,
              ChatProtocol.textProblem(item.message.text) == nil else { return }
        outbox.append(item)
        queuedPerPeer[item.peer, default: 0] += 1
    }

    /// Saved allow and block lists, cut to `maxListedKeys` each.
    mutating func restore(allowed a: [String], blocked b: [String]) {
        allowed = Set(a.prefix(limits.maxListedKeys))
        blocked = Set(b.prefix(limits.maxListedKeys))
    }
}
