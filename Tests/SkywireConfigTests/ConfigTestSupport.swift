import XCTest
import SkywireCrypto
@testable import SkywireConfig

/// Deterministic identities for tests (crypto_sign_seed_keypair).
enum TestKeys {
    static func pair(_ seedByte: UInt8) -> KeyPair {
        do {
            return try KeyPair.fromSeed([UInt8](repeating: seedByte, count: 32))
        } catch {
            XCTFail("fromSeed failed: \(error)")
            return KeyPair.generate()
        }
    }

    static let own = pair(1)
    static let peerA = pair(2)
    static let peerB = pair(3)
}

/// One step of a JSON path for editing test documents.
enum Step {
    case key(String)
    case index(Int)
}

extension JSONValue {
    /// Sets (or with nil removes) the value at `path`, creating nothing: the parents must exist.
    mutating func set(_ path: [Step], _ newValue: JSONValue?) {
        guard let first = path.first else {
            if let newValue { self = newValue }
            return
        }
        let rest = Array(path.dropFirst())
        switch (first, self) {
        case (.key(let k), .object(var members)):
            if let i = members.firstIndex(where: { $0.name == k }) {
                if rest.isEmpty, newValue == nil {
                    members.remove(at: i)
                } else {
                    members[i].value.set(rest, newValue)
                }
            } else if rest.isEmpty, let newValue {
                members.append(.init(name: k, value: newValue))
            } else {
                XCTFail("no member \(k)")
            }
            self = .object(members)
        case (.index(let i), .array(var items)):
            if rest.isEmpty, newValue == nil {
                items.remove(at: i)
            } else {
                items[i].set(rest, newValue)
            }
            self = .array(items)
        default:
            XCTFail("path step \(first) does not fit \(self.typeName)")
        }
    }

    /// Appends a member even if one with that name exists (for duplicate-name tests).
    mutating func appendMember(_ name: String, _ value: JSONValue) {
        guard case .object(var members) = self else { return XCTFail("not an object") }
        members.append(.init(name: name, value: value))
        self = .object(members)
    }
}

/// A per-test temporary directory, removed afterwards.
final class TempDir {
    let path: String

    init() throws {
        var template = Array("/tmp/skywire-config-test-XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ b in b.baseAddress.flatMap { mkdtemp($0) } }) else {
            throw ConfigError.io(path: "/tmp", operation: "mkdtemp", errno: errno)
        }
        path = String(cString: p)
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// Names in the directory, sorted (without . and ..).
    func listing() -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    deinit {
        for name in listing() {
            let p = file(name)
            if unlink(p) != 0 { rmdir(p) }
        }
        rmdir(path)
    }
}

/// Writes `text` to `path` with `mode`, replacing any file.
func writeRaw(_ text: String, to path: String, mode: mode_t = 0o600) {
    unlink(path)
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode)
    XCTAssertGreaterThanOrEqual(fd, 0, "open \(path)")
    let bytes = Array(text.utf8)
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    XCTAssertEqual(n, bytes.count)
    fchmod(fd, mode)
    close(fd)
}

func fileMode(_ path: String) -> mode_t? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return st.st_mode & 0o7777
}

func readText(_ path: String) -> String? {
    guard let bytes = try? VisorConfig.readFile(path: path) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}
