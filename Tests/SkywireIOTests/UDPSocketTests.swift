#if canImport(Glibc)
import Glibc
#endif
import Atomics
import NIOConcurrencyHelpers
import NIOCore
import SkywireSystem
import SkywireTestSupport
import XCTest
@testable import SkywireIO

/// Threads that send through `UDPSocket` while its owner closes it: sends after the close fail
/// with `closedError`, and none reaches the descriptor number the kernel hands out next.
final class UDPSocketTests: XCTestCase {
    static let senderThreads = 8
    /// Bounds per sender thread (sends) and for the whole test (time); how long the threads go
    /// on sending once the descriptor number was given to another socket.
    static let maxSendsPerThread = 2_000_000
    static let timeLimit: TimeAmount = .seconds(10)
    static let sendingAfterReuse: useconds_t = 100_000

    /// One datagram of `payload` bytes to `destination`, through `socket.sendSlots`.
    final class OneDatagram {
        let arena = UnsafeMutableRawBufferPointer.allocate(byteCount: UDPBatchSender.slotSize, alignment: 16)
        var lengths: [UInt16]
        var addresses = [sockaddr_storage](repeating: sockaddr_storage(), count: 1)
        var addressLengths: [socklen_t] = [0]

        init(to destination: SocketAddress, payload: Int) {
            lengths = [UInt16(payload)]
            arena.initializeMemory(as: UInt8.self, repeating: 0x5a)
            addressLengths[0] = destination.withSockAddr { sa, length in
                withUnsafeMutableBytes(of: &addresses[0]) { $0.baseAddress?.copyMemory(from: sa, byteCount: length) }
                return socklen_t(length)
            }
        }

        deinit { arena.deallocate() }

        func send(on socket: UDPSocket, tally: inout UDPSendTally) {
            lengths.withUnsafeBufferPointer { lens in
                addresses.withUnsafeBufferPointer { addrs in
                    addressLengths.withUnsafeBufferPointer { alens in
                        socket.sendSlots(arena: arena, slotSize: UDPBatchSender.slotSize, lengths: lens, addresses: addrs,
                                         addressLengths: alens, count: 1, tally: &tally)
                    }
                }
            }
        }
    }

    func testSendsRacingCloseFailAndNeverReachTheReusedDescriptor() throws {
        let receiver = try UDPSocket(bindingTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        let destination = try XCTUnwrap(receiver.localAddress)
        let socket = try UDPSocket(bindingTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        let number = try socket.withDescriptor { $0 }
        // Atomics, not locks: the threads' own contention must not slow the close down.
        let closed = ManagedAtomic(false)
        let stop = ManagedAtomic(false)
        let started = ManagedAtomic(0)
        let results = NIOLockedValueBox<[(sent: UInt64, refusedAfterClose: Int, otherErrors: Int, sentAfterClose: Int)]>([])
        let deadline = NIODeadline.now() + Self.timeLimit

        var threads: [SystemThread] = []
        for index in 0..<Self.senderThreads {
            threads.append(try SystemThread(name: "udp-sender\(index)") {
                let datagram = OneDatagram(to: destination, payload: 64)
                var tally = UDPSendTally(segmentationOffload: false)
                var refusedAfterClose = 0
                var otherErrors = 0
                var sentAfterClose = 0
                var announced = false
                var sends = 0
                while sends < Self.maxSendsPerThread && !stop.load(ordering: .relaxed) && NIODeadline.now() < deadline {
                    sends += 1
                    let wasClosed = closed.load(ordering: .acquiring)
                    tally.lastError = nil
                    datagram.send(on: socket, tally: &tally)
                    if let error = tally.lastError as? SystemError {
                        if error == UDPSocket.closedError {
                            if wasClosed { refusedAfterClose += 1 }
                        } else {
                            otherErrors += 1   // a full buffer drops without an error
                        }
                    } else if wasClosed {
                        sentAfterClose += 1
                    }
                    if !announced { announced = true; started.wrappingIncrement(ordering: .relaxed) }
                }
                results.withLockedValue { $0.append((tally.sent, refusedAfterClose, otherErrors, sentAfterClose)) }
            })
        }
        // Every thread is sending; the owner closes the socket under them. Once close(2) ran
        // (after the last send in progress), the kernel gives the lowest free number, the one
        // just closed, to the next socket: an unbound UDP socket that must stay unused while
        // the threads go on sending.
        while started.load(ordering: .relaxed) < Self.senderThreads && NIODeadline.now() < deadline { usleep(1000) }
        socket.close()
        // Sends that start from here on must fail.
        closed.store(true, ordering: .releasing)
        let reused = ReusedDescriptor(number)
        usleep(Self.sendingAfterReuse)
        stop.store(true, ordering: .relaxed)
        for thread in threads { thread.join() }

        XCTAssertFalse(socket.isOpen)
        XCTAssertTrue(reused.taken, "the test needs the closed number reused")
        XCTAssertEqual(reused.written, [], "a send reached the reused descriptor after the close")
        let all = results.withLockedValue { $0 }
        XCTAssertEqual(all.count, Self.senderThreads)
        for result in all {
            XCTAssertGreaterThan(result.refusedAfterClose, 0, "a thread sent nothing after the close")
            XCTAssertEqual(result.sentAfterClose, 0, "a send that started after the close went out")
            XCTAssertEqual(result.otherErrors, 0)
        }
        XCTAssertGreaterThan(all.map(\.sent).reduce(0, +), 0, "nothing was sent before the close")
        XCTAssertThrowsError(try socket.withDescriptor { _ in }) { XCTAssertEqual($0 as? SystemError, UDPSocket.closedError) }
    }

    /// A close during a use waits for it: the descriptor stays valid inside `withDescriptor`.
    func testCloseDuringUseClosesWhenTheUseEnds() throws {
        let socket = try UDPSocket(bindingTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        try socket.withDescriptor { fd in
            socket.close()
            XCTAssertFalse(socket.isOpen)
            XCTAssertNotEqual(fcntl(fd, F_GETFD), -1, "closed while in use")
        }
        XCTAssertThrowsError(try socket.withDescriptor { _ in })
    }

    /// recvmmsg through `UDPMessageReader`: every datagram with its source, in order.
    func testReaderReturnsEachDatagramWithItsSource() throws {
        let receiver = try UDPSocket(bindingTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        let sender = try UDPSocket(bindingTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        let destination = try XCTUnwrap(receiver.localAddress)
        for length in [1, 100, 1200] {
            var tally = UDPSendTally(segmentationOffload: false)
            OneDatagram(to: destination, payload: length).send(on: sender, tally: &tally)
            XCTAssertEqual(tally.sent, 1)
        }
        let reader = UDPMessageReader(for: receiver)
        var got: [(Int, Int?)] = []
        for _ in 0..<100 where got.count < 3 {   // bounded: loopback delivers at once, but allow a little time
            if try reader.read(from: receiver) == 0 { usleep(10_000); continue }
            reader.forEachDatagram { data, from in got.append((data.readableBytes, from.port)) }
        }
        XCTAssertEqual(got.map(\.0), [1, 100, 1200])
        XCTAssertEqual(Set(got.map(\.1)), [sender.localAddress?.port])
        XCTAssertEqual(try reader.read(from: receiver), 0)
    }

    /// `UDPBatchSender` (the sudph peers' records) sends a run of equal-sized datagrams to one
    /// address as one UDP GSO message: a GRO receiver gets them in one message, in order, each
    /// at its own length (before, each went as its own message).
    func testBatchSenderSendsARunAsOneSegmentedMessage() throws {
        let receiver = try UDPSocket(bindingTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0), receiveOffload: true)
        let socket = try UDPSocket(bindingTo: try SocketAddress(ipAddress: "127.0.0.1", port: 0))
        let destination = try XCTUnwrap(receiver.localAddress)
        let sender = UDPBatchSender(socket: socket)
        let lengths = [Int](repeating: 1_242, count: 12) + [60]
        for (i, length) in lengths.enumerated() {
            sender.enqueue(address: { storage in
                destination.withSockAddr { sa, len in
                    UnsafeMutableRawPointer(storage).copyMemory(from: sa, byteCount: len)
                    return socklen_t(len)
                }
            }, fill: { slot in
                slot.baseAddress?.initializeMemory(as: UInt8.self, repeating: UInt8(i), count: length)
                return length
            })
        }
        sender.flush()
        if !sender.segmentationOffload, sender.lastError != nil { throw XCTSkip("the kernel refused UDP GSO") }
        XCTAssertTrue(sender.segmentationOffload, "UDP GSO not used")
        XCTAssertEqual(sender.sent, UInt64(lengths.count))
        let reader = UDPMessageReader(for: receiver)
        var messages = 0
        var got: [(length: Int, first: UInt8?)] = []
        for _ in 0..<100 where got.count < lengths.count {   // bounded; loopback delivers at once
            let n = try reader.read(from: receiver)
            if n == 0 { usleep(10_000); continue }
            messages += n
            reader.forEachDatagram { data, _ in
                got.append((data.readableBytes, data.getInteger(at: data.readerIndex, as: UInt8.self)))
            }
        }
        XCTAssertEqual(got.map(\.length), lengths)
        XCTAssertEqual(got.map(\.first), lengths.indices.map { UInt8($0) })
        XCTAssertEqual(messages, 1, "the run was not sent as one GSO message")
    }
}
