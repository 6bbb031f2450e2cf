import SkywireConfig
import SkywireCrypto
import SkywireWire
import XCTest
@testable import SkywireVisor

final class ChatStoreTests: XCTestCase {
    let me = KeyPair.generate().publicKey.hex
    let peer = KeyPair.generate().publicKey.hex
    let other = KeyPair.generate().publicKey.hex

    func message(_ id: UInt64, _ text: String = "x", group: ChatGroupRef? = nil) -> ChatWireMessage {
        ChatWireMessage(id: id, timeMillis: id, group: group, text: text)
    }

    func testQueueBoundsPerPeerAndTotalAreAllOrNothing() throws {
        var limits = ChatLimits()
        limits.maxQueuedPerPeer = 3
        limits.maxQueuedTotal = 5
        var store = ChatStore(limits: limits)
        for i in 1...3 { try store.enqueue(message(UInt64(i)), to: [peer], conversation: peer, localKey: me) }
        XCTAssertThrowsError(try store.enqueue(message(4), to: [peer], conversation: peer, localKey: me)) { e in
            XCTAssertEqual((e as? ChatStoreError)?.kind, .full)
            XCTAssertTrue("\(e)".contains("queue full"), "\(e)")
        }
        try store.enqueue(message(5), to: [other], conversation: other, localKey: me)
        // A group message to both would pass `peer`'s bound: refused whole, nothing queued for `other`.
        XCTAssertThrowsError(try store.enqueue(message(6), to: [other, peer], conversation: "g0000000000000001", localKey: me))
        XCTAssertEqual(store.queuedPerPeer[other], 1)
        try store.enqueue(message(7), to: [other], conversation: other, localKey: me)
        XCTAssertThrowsError(try store.enqueue(message(8), to: [other], conversation: other, localKey: me))  // total 5
        XCTAssertEqual(store.outbox.count, 5)
        store.acknowledged(peer: peer, id: 1)
        XCTAssertEqual(store.queuedPerPeer[peer], 2)
        XCTAssertEqual(store.conversations[peer]?.entries.first?.pending, 0)
        XCTAssertEqual(store.queued(for: peer, limit: 10).map(\.message.id), [2, 3])
        store.acknowledged(peer: peer, id: 1)  // a repeated ack changes nothing
        XCTAssertEqual(store.outbox.count, 4)
    }

    func testHistoryBoundedPerConversationAndInBytes() {
        var limits = ChatLimits()
        limits.maxEntriesPerConversation = 10
        limits.maxHistoryBytes = 15 * (ChatLimits.entryOverhead + 100)
        var store = ChatStore(limits: limits)
        let text = String(repeating: "a", count: 100)
        for i in 1...50 { XCTAssertTrue(store.receive(message(UInt64(i), text), from: peer, now: Int64(i))) }
        XCTAssertEqual(store.conversations[peer]?.entries.map(\.id), Array(41...50))
        XCTAssertEqual(store.conversations[peer]?.unread, 10)
        for i in 1...15 { _ = store.receive(message(UInt64(i), text), from: other, now: Int64(100 + i)) }
        // 20 entries would be over 15 entries' bytes: the oldest added (peer's) go first.
        XCTAssertEqual(store.historyBytes, 15 * (ChatLimits.entryOverhead + 100))
        XCTAssertEqual(store.conversations[peer]?.entries.map(\.id), Array(46...50))
        XCTAssertEqual(store.conversations[other]?.entries.count, 10)
        XCTAssertLessThanOrEqual(store.conversations[peer]?.unread ?? 99, 5)
    }

    /// A sender's clock does not decide what is dropped: a far-past timestamp is not evicted first.
    func testEvictionFollowsArrivalNotTheSendersClock() {
        var limits = ChatLimits()
        limits.maxHistoryBytes = 2 * (ChatLimits.entryOverhead + 1)
        var store = ChatStore(limits: limits)
        _ = store.receive(ChatWireMessage(id: 1, timeMillis: 1_000_000, text: "a"), from: peer, now: 1)
        _ = store.receive(ChatWireMessage(id: 2, timeMillis: 0, text: "b"), from: other, now: 2)
        _ = store.receive(ChatWireMessage(id: 3, timeMillis: 0, text: "c"), from: other, now: 3)
        XCTAssertNil(store.conversations[peer])
        XCTAssertEqual(store.conversations[other]?.entries.map(\.id), [2, 3])
    }

    func testConversationCountBounded() {
        var limits = ChatLimits()
        limits.maxConversations = 3
        var store = ChatStore(limits: limits)
        let keys = (0..<5).map { _ in KeyPair.generate().publicKey.hex }
        for (i, k) in keys.enumerated() { _ = store.receive(message(1), from: k, now: Int64(i)) }
        XCTAssertEqual(Set(store.conversations.keys), Set(keys.suffix(3)))
    }

    func testRepeatFromTheSameSenderIsNotStoredTwice() {
        var store = ChatStore()
        XCTAssertTrue(store.receive(message(9, "one"), from: peer, now: 1))
        XCTAssertFalse(store.receive(message(9, "one"), from: peer, now: 2))
        XCTAssertTrue(store.receive(message(9, "one"), from: other, now: 3))
        XCTAssertEqual(store.conversations[peer]?.entries.count, 1)
    }

    func testGroups() throws {
        var limits = ChatLimits()
        limits.maxGroupMembers = 2
        limits.maxGroups = 2
        var store = ChatStore(limits: limits)
        try store.createGroup(id: 5, name: "team", members: [peer, me, peer], localKey: me)
        XCTAssertEqual(store.groups[5]?.members, [peer])
        try store.addMember(other, toGroup: 5, localKey: me)
        XCTAssertThrowsError(try store.addMember(KeyPair.generate().publicKey.hex, toGroup: 5, localKey: me))
        XCTAssertThrowsError(try store.createGroup(id: 6, name: "", members: [], localKey: me))
        XCTAssertThrowsError(try store.createGroup(id: 6, name: "x", members: (0..<3).map { _ in KeyPair.generate().publicKey.hex }, localKey: me))
        // A stranger's message for our group files there but does not make it a member.
        let stranger = KeyPair.generate().publicKey.hex
        _ = store.receive(message(1, group: ChatGroupRef(id: 5, name: "evil")), from: stranger, now: 1)
        XCTAssertEqual(store.groups[5]?.members, [peer, other])
        XCTAssertEqual(store.groups[5]?.name, "team")
        XCTAssertEqual(store.conversations["g0000000000000005"]?.entries.count, 1)
        // A learned group grows with whom it hears from; past maxGroups, group messages file as direct.
        _ = store.receive(message(2, group: ChatGroupRef(id: 7, name: "theirs")), from: peer, now: 2)
        XCTAssertEqual(store.groups[7]?.local, false)
        _ = store.receive(message(3, group: ChatGroupRef(id: 8, name: "third")), from: other, now: 3)
        XCTAssertNil(store.groups[8])
        XCTAssertEqual(store.conversations[other]?.entries.last?.id, 3)
    }

    func testAllowAndBlockListsBounded() throws {
        var limits = ChatLimits()
        limits.maxListedKeys = 1
        var store = ChatStore(limits: limits)
        try store.setBlocked(peer, true)
        try store.setBlocked(peer, true)
        XCTAssertThrowsError(try store.setBlocked(other, true))
        try store.setBlocked(peer, false)
        try store.setAllowed(other, true)
        XCTAssertEqual(store.blocked, [])
        XCTAssertEqual(store.allowed, [other])
    }

    func testStateRoundTripsAndHoldsTheBounds() throws {
        var store = ChatStore()
        try store.createGroup(id: 0xABC, name: "g", members: [peer, other], localKey: me)
        try store.enqueue(message(1, "hello"), to: [peer], conversation: peer, localKey: me)
        try store.enqueue(message(2, "all", group: ChatGroupRef(id: 0xABC, name: "g")), to: [peer, other],
                          conversation: ChatStore.conversationID(group: 0xABC), localKey: me)
        store.acknowledged(peer: other, id: 2)
        _ = store.receive(message(3, "ünï"), from: peer, now: 5)
        try store.setBlocked(other, true)
        let text = store.snapshot.json.compact()
        let restored = try ChatStore(restoring: ControlValue(json: JSONParser.parse(text)), limits: ChatLimits())
        XCTAssertEqual(restored.snapshot, store.snapshot)
        XCTAssertEqual(restored.outbox, store.outbox)
        XCTAssertEqual(restored.conversations[peer]?.unread, 1)

        var small = ChatLimits()
        small.maxQueuedTotal = 1
        small.maxEntriesPerConversation = 1
        let cut = try ChatStore(restoring: store.snapshot, limits: small)
        XCTAssertEqual(cut.outbox.count, 1)
        XCTAssertEqual(cut.conversations[peer]?.entries.map(\.id), [3])
        XCTAssertThrowsError(try ChatStore(restoring: .object(["version": .int(99)]), limits: ChatLimits()))
    }

    func testRateLimiterBurstRefillAndBoundedSenders() {
        var limiter = ChatRateLimiter(perMinute: 60, burst: 3, maxSenders: 2)
        XCTAssertEqual((0..<5).map { _ in limiter.admit("a", now: 0) }, [true, true, true, false, false])
        XCTAssertTrue(limiter.admit("a", now: 1.0))   // one a second
        XCTAssertFalse(limiter.admit("a", now: 1.5))
        XCTAssertTrue(limiter.admit("b", now: 2))
        XCTAssertTrue(limiter.admit("c", now: 3))     // evicts the quietest (a)
        XCTAssertEqual(limiter.buckets.count, 2)
        XCTAssertNil(limiter.buckets["a"])
    }

    func testOptions() throws {
        XCTAssertEqual(try ChatOptions.parse([]).whitelist, .nobody)
        let o = try ChatOptions.parse(["--whitelist", peer, "--rate=120"])
        XCTAssertEqual(o.whitelist, .keys([try PublicKey(hex: peer)]))
        XCTAssertEqual(o.ratePerMinute, 120)
        XCTAssertEqual(try ChatOptions.parse(["-w", "any"]).whitelist, .anyone)
        for bad in [["--rate", "0"], ["--rate"], ["--bogus", "1"], ["--whitelist", "nokey"], ["-w", "any,\(peer)"]] {
            XCTAssertThrowsError(try ChatOptions.parse(bad), "\(bad)")
        }
        guard case .skychat = try AppOptions(app: "skychat", arguments: ["-w", "any"]) else { return XCTFail("not skychat") }
    }
}

