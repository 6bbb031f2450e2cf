import XCTest
@testable import skywire

/// `skywire cli update`: the bundle argument and the status report (docs/update.md).
final class UpdateRequestTests: XCTestCase {
    func testFileAndURLs() throws {
        XCTAssertEqual(try UpdateSource.parse("/tmp/v2.raucb"), .file("/tmp/v2.raucb"))
        XCTAssertEqual(try UpdateSource.parse("v2.raucb"), .file("v2.raucb"))
        XCTAssertEqual(try UpdateSource.parse("https://updates.example/v2.raucb"), .url("https://updates.example/v2.raucb"))
        XCTAssertEqual(try UpdateSource.parse("HTTP://192.0.2.1:8080/b"), .url("HTTP://192.0.2.1:8080/b"))
        XCTAssertEqual(UpdateSource.url("http://h/x").raucArgument, "http://h/x")
    }

    func testRefusals() {
        func refused(_ s: String) -> UpdateRequestError? {
            do { _ = try UpdateSource.parse(s); return nil } catch { return error }
        }
        XCTAssertEqual(refused(""), .empty)
        XCTAssertEqual(refused("ftp://host/x.raucb"), .unsupportedScheme("ftp"))
        XCTAssertEqual(refused("file:///tmp/x"), .unsupportedScheme("file"))
        XCTAssertEqual(refused("https:///no-host"), .badURL("https:///no-host"))
        XCTAssertEqual(refused("http://host/a b"), .badURL("http://host/a b"))
        XCTAssertEqual(refused("/tmp/x\n--help"), .controlCharacter)
        XCTAssertEqual(refused(String(repeating: "a", count: UpdateSource.maxLength + 1)), .tooLong(UpdateSource.maxLength + 1))
        XCTAssertNotNil(refused("gopher://h/x")?.description.contains("not supported"))
    }

    func testStatusReport() {
        let r = UpdateStatusReport.parse(imageRelease: "BOARD=qemu-arm64\nVERSION=v2\nOVERLAYS=base\n",
                                         cmdline: "root=PARTUUID=x rw rauc.slot=B panic=10\n",
                                         lastUpdate: ["state": "committed", "slot": "B", "version": "v2"])
        XCTAssertEqual(r.board, "qemu-arm64")
        XCTAssertEqual(r.version, "v2")
        XCTAssertEqual(r.slot, "B")
        XCTAssertEqual(r.lines, ["board    qemu-arm64", "version  v2", "slot     B", "last     committed, version v2, slot B"])
        let old = UpdateStatusReport.parse(imageRelease: "", cmdline: "root=/dev/vda2", lastUpdate: [:])
        XCTAssertNil(old.slot)
        XCTAssertEqual(old.lines.last, "last     no update installed")
        let failed = UpdateStatusReport.parse(imageRelease: "VERSION=v1", cmdline: "rauc.slot=A",
                                              lastUpdate: ["state": "rolled-back", "version": "v3", "slot": "B", "reason": "skywire.service is failed"])
        XCTAssertEqual(failed.lines.last, "last     rolled-back, version v3, slot B: skywire.service is failed")
    }

    /// `apply` takes a FILE or URL, or `--from PK` (with `--bundle` only then).
    func testApplyArguments() throws {
        let pk = String(repeating: "a", count: 64)
        let fromPeer = try UpdateGroup.Apply.parse(["--from", pk, "--bundle", "v2.raucb", "--json"])
        XCTAssertEqual(fromPeer.from, pk)
        XCTAssertEqual(fromPeer.bundleName, "v2.raucb")
        XCTAssertEqual(fromPeer.downloadDirectory, UpdateMeshFetch.defaultDirectory)
        XCTAssertEqual(try UpdateGroup.Apply.parse(["/tmp/v2.raucb"]).bundle, "/tmp/v2.raucb")
        for bad in [[], ["/tmp/v2.raucb", "--from", pk], ["/tmp/v2.raucb", "--bundle", "v2.raucb"],
                    ["--from", pk, "--download-dir", "relative"], ["--from", pk, "--dial-timeout", "0"]] {
            XCTAssertThrowsError(try UpdateGroup.Apply.parse(bad), "\(bad)")
        }
    }
}
