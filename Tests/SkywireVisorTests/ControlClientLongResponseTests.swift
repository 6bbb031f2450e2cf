import Foundation
import SkywireSystem
@testable import SkywireVisor
import XCTest

/// The CLI reads long answers from its visor: `tp ls` with thousands of transports is one line
/// of several MB (docs/scale.md measured ~420 B per transport; the 1 MiB line cap made
/// `tp ls` fail with "response too long" past ~2,500 transports).
final class ControlClientLongResponseTests: XCTestCase {
    /// A fake visor on a Unix socket that answers one request with `result`, a string of `size` bytes.
    private func serveOnce(size: Int) throws -> (path: String, done: XCTestExpectation) {
        let path = FileManagerTemp.make() + "/c.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in path.utf8.enumerated() where i < buf.count - 1 { buf[i] = b }
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(fd, 1), 0)
        let done = expectation(description: "served")
        let line = Array(#"{"id":1,"result":""#.utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: size) + Array("\"}\n".utf8)
        Thread.detachNewThread {
            defer { close(fd); done.fulfill() }
            let client = accept(fd, nil, nil)
            guard client >= 0 else { return }
            defer { close(client) }
            var byte: UInt8 = 0
            while recv(client, &byte, 1, 0) == 1 && byte != UInt8(ascii: "\n") {}
            var off = 0
            while off < line.count {
                let n = line[off...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return }
                off += n
            }
        }
        return (path, done)
    }

    func testAResponseOfSeveralMegabytesIsRead() throws {
        let size = 3 << 20
        let (path, done) = try serveOnce(size: size)
        let value = try ControlClient(path: path, timeout: 20).call("tp.list")
        XCTAssertEqual(value.stringValue?.utf8.count, size)
        wait(for: [done], timeout: 20)
    }
}
