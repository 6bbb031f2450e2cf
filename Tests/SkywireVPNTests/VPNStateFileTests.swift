import Glibc
import SkywireConfig
import SkywireSystem
import XCTest
@testable import SkywireVPN

/// The VPN state file is written with the one atomic writer (`AtomicFile`): mode 0600, whole
/// or not at all, no temporary file left, and nothing planted next to it is followed.
final class VPNStateFileTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/skw-statefile-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        dir = String(cString: try XCTUnwrap(made))
    }

    override func tearDown() {
        _ = try? Subprocess.run("/bin/rm", ["-rf", dir])
    }

    private func names() -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }

    func testSaveReplacesTheWholeFileWithMode0600AndLeavesNoTemporary() throws {
        let file = VPNStateFile(directory: dir, name: "vpn-client.state")
        try file.save([("route", "a"), ("dns", "b")])
        try file.save([("route", "c")])
        XCTAssertEqual(file.load().map { "\($0.key)=\($0.value)" }, ["route=c"])
        var st = stat()
        XCTAssertEqual(stat(file.path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o600)
        XCTAssertEqual(names(), ["vpn-client.state"], "no temporary file left")
    }

    /// The earlier writer opened `PATH.tmp` with O_CREAT|O_TRUNC and followed a symlink there,
    /// truncating whatever it pointed at, and then renamed the symlink over the state file.
    func testASymlinkAtTheOldTemporaryNameIsNotFollowed() throws {
        let victim = dir + "/victim"
        try FileIO.overwrite(victim, Array("keep me\n".utf8))
        let file = VPNStateFile(directory: dir, name: "vpn-client.state")
        XCTAssertEqual(symlink(victim, file.path + ".tmp"), 0)
        try file.save([("route", "x")])
        XCTAssertEqual(try FileIO.read(victim).map { String(decoding: $0, as: UTF8.self) }, "keep me\n")
        var st = stat()
        XCTAssertEqual(lstat(file.path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o170000, 0o100000, "the state file is a regular file, not the planted link")
        XCTAssertEqual(file.load().map(\.value), ["x"])
    }

    func testAtomicFileRefusesToReplaceUnlessAsked() throws {
        let path = dir + "/f"
        try AtomicFile.write(Array("one".utf8), to: path, replace: false)
        XCTAssertThrowsError(try AtomicFile.write(Array("two".utf8), to: path, replace: false)) { error in
            XCTAssertEqual(error as? AtomicFileError, .exists(path: path))
        }
        try AtomicFile.write(Array("three".utf8), to: path, replace: true)
        XCTAssertEqual(try FileIO.read(path), Array("three".utf8))
        XCTAssertThrowsError(try AtomicFile.write([], to: dir + "/missing/f", replace: true))
        XCTAssertEqual(names(), ["f"])
    }
}
