import NIOConcurrencyHelpers
import SkywireCrypto
import SkywireSystem
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// The `.raucb` files the `update-server` app serves: the regular files directly in its `--dir`
/// whose names pass `UpdateProtocol.nameProblem`. Read-only. A name is served only when the
/// directory's listing holds it (never a path: no `/`, no `..`, no leading `.`), opened with
/// O_NOFOLLOW relative to the directory. Every method blocks (readdir, read): call them on the
/// blocking pool, never on an event loop. SHA-256 digests are kept per file identity (device,
/// inode, size, mtime), so a bundle is hashed once until it changes.
final class UpdateBundleDirectory: @unchecked Sendable {
    // @unchecked Sendable: `digests` is guarded by `lock`; `path` is immutable.
    let path: String
    private let lock = NIOLock()
    private var digests: [FileIdentity: [UInt8]] = [:]
    /// Bytes per read(2) while hashing.
    static let hashChunk = 256 * 1024

    /// What a digest is kept for: a file replaced or rewritten gets a new one.
    struct FileIdentity: Hashable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modifiedSeconds: Int
        var modifiedNanoseconds: Int
    }

    /// A bundle opened for a `get`: its descriptor (closed when released) and its listing entry.
    final class OpenBundle: @unchecked Sendable {
        // @unchecked Sendable: immutable; the descriptor is read with pread(2) only, by one transfer.
        let descriptor: OwnedDescriptor
        let info: UpdateBundleInfo
        init(descriptor: OwnedDescriptor, info: UpdateBundleInfo) {
            self.descriptor = descriptor
            self.info = info
        }
    }

    enum Failure: Error, Equatable {
        case noSuchBundle(String)
        case unreadable(String)
    }

    init(path: String) {
        self.path = path
    }

    /// Whether the directory can be listed now (the app's start checks it).
    func check() throws {
        _ = try names()
    }

    /// The served bundles by name (the first `UpdateProtocol.maxEntries`), with sizes and digests.
    func list() throws -> [UpdateBundleInfo] {
        let dir = try openDirectory()
        var out: [UpdateBundleInfo] = []
        for name in try names().prefix(UpdateProtocol.maxEntries) {
            // A file that went away or is not a regular file between readdir and open is skipped.
            guard let bundle = try? open(name, in: dir) else { continue }
            out.append(bundle.info)
        }
        return out
    }

    /// Opens bundle `name` for reading; `noSuchBundle` unless the directory lists it as a bundle.
    func open(_ name: String) throws -> OpenBundle {
        guard UpdateProtocol.nameProblem(name) == nil, try names().contains(name) else { throw Failure.noSuchBundle(name) }
        return try open(name, in: try openDirectory())
    }

    /// The names in the directory that are bundle names, sorted.
    private func names() throws -> [String] {
        guard let dir = opendir(path) else { throw Failure.unreadable("\(path): \(String(cString: strerror(errno)))") }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if UpdateProtocol.nameProblem(name) == nil { out.append(name) }
        }
        return out.sorted()
    }

    private func openDirectory() throws -> OwnedDescriptor {
        do {
            return OwnedDescriptor(taking: try syscall("open(\(path))") { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) })
        } catch {
            throw Failure.unreadable("\(error)")
        }
    }

    private func open(_ name: String, in dir: OwnedDescriptor) throws -> OpenBundle {
        let fd: OwnedDescriptor
        do {
            fd = OwnedDescriptor(taking: try syscall("openat(\(name))") { openat(dir.raw, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK) })
        } catch let e as SystemError where e.errno == ENOENT || e.errno == ELOOP {
            throw Failure.noSuchBundle(name)
        } catch {
            throw Failure.unreadable("\(error)")
        }
        var st = stat()
        guard fstat(fd.raw, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { throw Failure.noSuchBundle(name) }
        let identity = FileIdentity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                                    modifiedSeconds: st.st_mtim.tv_sec, modifiedNanoseconds: st.st_mtim.tv_nsec)
        let digest = try lock.withLock { digests[identity] } ?? hash(fd, name: name, identity: identity)
        return OpenBundle(descriptor: fd, info: UpdateBundleInfo(name: name, size: UInt64(st.st_size), sha256: digest))
    }

    private func hash(_ fd: OwnedDescriptor, name: String, identity: FileIdentity) throws -> [UInt8] {
        let hasher = SHA256Stream()
        var chunk = [UInt8](repeating: 0, count: Self.hashChunk)
        var offset: Int64 = 0
        while true {
            let n: Int
            do {
                n = try chunk.withUnsafeMutableBytes { buffer in
                    try syscall("pread(\(name))") { pread(fd.raw, buffer.baseAddress, buffer.count, off_t(offset)) }
                }
            } catch {
                throw Failure.unreadable("\(error)")
            }
            if n == 0 { break }
            chunk.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            offset += Int64(n)
        }
        guard offset == identity.size else { throw Failure.unreadable("\(name) changed while it was hashed") }
        let digest = hasher.finalize()
        lock.withLock { digests[identity] = digest }
        return digest
    }
}
