import NIOCore
import SkywireSystem
import SkywireTransport
import SkywireWire
#if canImport(Glibc)
import Glibc
#endif

/// One request to `update-server` over one stream: reads the client's `list` or `get`, answers,
/// and for a `get` sends the file from the requested offset. Confined to the stream's event loop;
/// directory listing, hashing and file reads run on the blocking pool (docs/architecture.md,
/// "Where blocking work runs"). Back-pressure: at most one chunk is read ahead, and the next
/// read starts only while the stream is writable, so a slow reader holds the server to one
/// chunk plus the stream's own bounded queue, never the bundle.
final class UpdateServerSession: AppStreamDelegate, @unchecked Sendable {
    // @unchecked Sendable: every field is used on the stream's event loop only; pool completions
    // hop back there (`loop.execute`) before touching them.
    /// Bytes read from the file per pread(2) and written to the stream at once.
    static let chunkSize = 64 * 1024
    /// The longest request accepted: `get` with the longest name.
    static let maxRequestBytes = UpdateProtocol.headerLength + 8 + UpdateProtocol.maxNameBytes

    private let stream: AppStream
    // Strong: the app keeps its sessions until they end, a session its app until then (stop ends them all).
    private let app: UpdateServerApp
    private let key: String
    private var decoder = UpdateFrameDecoder()
    private var received = 0
    private var requested = false
    private var ended = false
    private var idleTimer: Scheduled<Void>?
    /// The file of a `get`, its size and the next byte to send.
    private var bundle: UpdateBundleDirectory.OpenBundle?
    private var position: UInt64 = 0
    private var readInFlight = false
    private var sentThisRequest = 0

    var eventLoop: EventLoop { stream.eventLoop }

    init(stream: AppStream, app: UpdateServerApp) {
        self.stream = stream
        self.app = app
        key = stream.remoteKeyHex
    }

    func start() {
        stream.setDelegate(self)
        armIdleTimer()
    }

    /// Answers a stream that is not served with an `error` frame and FIN.
    static func refuse(_ stream: AppStream, _ code: UpdateErrorCode, _ message: String) {
        if let bytes = try? UpdateFrame.error(code, message).encoded() { stream.write(ByteBuffer(bytes: bytes)) }
        stream.finish()
    }

    /// Resets the stream (the app stopped, the idle timeout).
    func abort() {
        guard !ended else { return }
        stream.reset(.appClosed)
        end(completed: false)
    }

    private func end(completed: Bool) {
        guard !ended else { return }
        ended = true
        idleTimer?.cancel()
        idleTimer = nil
        stream.setDelegate(nil)
        // A read in flight still uses the descriptor; its completion drops it.
        if !readInFlight { bundle = nil }
        app.ended(self, key: key, completed: completed)
    }

    private func armIdleTimer() {
        idleTimer?.cancel()
        idleTimer = stream.eventLoop.scheduleTask(in: app.idleTimeout) { [self] in
            guard !ended else { return }
            app.logger.notice("update-server: reset a request idle for \(app.options.idleTimeoutSeconds) s", metadata: ["pk": "\(key)"])
            abort()
        }
    }

    private func fail(_ code: UpdateErrorCode, _ message: String) {
        Self.refuse(stream, code, message)
        end(completed: false)
    }

    // MARK: AppStreamDelegate

    func appStream(_ stream: AppStream, didReceive data: ByteBuffer) {
        guard !ended else { return }
        // One request per stream: bytes after it are a protocol error, not something to buffer.
        guard !requested else { return abort() }
        received += data.readableBytes
        guard received <= Self.maxRequestBytes else { return fail(.badRequest, "a request has at most \(Self.maxRequestBytes) bytes") }
        decoder.feed(data.readableBytesView)
        let frame: UpdateFrame?
        do {
            frame = try decoder.next()
        } catch {
            return fail(.badRequest, "bad request: \(error)")
        }
        guard let frame else { return }
        requested = true
        armIdleTimer()
        switch frame {
        case .list: list()
        case .get(let name, let offset): get(name, from: offset)
        default: fail(.badRequest, "a client sends list or get, not \(frame.type)")
        }
    }

    func appStreamDidReceiveFinish(_ stream: AppStream) {
        // The client keeps its direction open while it wants the answer (PROTOCOL.md §6): its FIN
        // means it went away (a CLI killed: the visor's bridge finishes the stream), so nothing
        // more is read from the file for it.
        guard !ended else { return }
        stream.finish()
        end(completed: false)
    }

    func appStream(_ stream: AppStream, didResetWith code: AppStreamResetCode) {
        end(completed: false)
    }

    func appStreamWritabilityChanged(_ stream: AppStream) {
        if stream.isWritable { pump() }
    }

    // MARK: Requests

    private func list() {
        let directory = app.directory
        let loop = stream.eventLoop
        BlockingPool.shared.submit({ try directory.list() }) { result in
            loop.execute { [self] in
                guard !ended else { return }
                switch result {
                case .success(let entries):
                    do {
                        stream.write(ByteBuffer(bytes: try UpdateFrame.listOK(entries).encoded()))
                        stream.finish()
                        end(completed: true)
                    } catch {
                        fail(.readFailed, "cannot list: \(error)")
                    }
                case .failure(let error):
                    fail(.readFailed, "cannot list the bundles: \(error)")
                }
            }
        }
    }

    private func get(_ name: String, from offset: UInt64) {
        let directory = app.directory
        let loop = stream.eventLoop
        BlockingPool.shared.submit({ try directory.open(name) }) { result in
            loop.execute { [self] in
                guard !ended else { return }
                switch result {
                case .success(let opened):
                    guard offset <= opened.info.size else {
                        return fail(.badOffset, "offset \(offset) is past the end of \(name) (\(opened.info.size) bytes)")
                    }
                    bundle = opened
                    position = offset
                    let header = UpdateGetHeader(size: opened.info.size, offset: offset, sha256: opened.info.sha256)
                    do {
                        stream.write(ByteBuffer(bytes: try UpdateFrame.getOK(header).encoded()))
                    } catch {
                        return fail(.readFailed, "\(error)")
                    }
                    app.logger.info("update-server: sending \(name) from byte \(offset) of \(opened.info.size)", metadata: ["pk": "\(key)"])
                    pump()
                case .failure(UpdateBundleDirectory.Failure.noSuchBundle):
                    fail(.noSuchBundle, "no bundle named '\(name)' here")
                case .failure(let error):
                    fail(.readFailed, "cannot read \(name): \(error)")
                }
            }
        }
    }

    /// Reads the next chunk on the blocking pool while the stream is writable; its completion
    /// writes it and comes back here. The end of the file finishes the stream.
    private func pump() {
        guard !ended, !readInFlight, let bundle else { return }
        guard position < bundle.info.size else {
            stream.finish()
            app.logger.info("update-server: sent \(bundle.info.name) (\(sentThisRequest) bytes in this request)", metadata: ["pk": "\(key)"])
            return end(completed: true)
        }
        guard stream.isWritable else { return }
        readInFlight = true
        let count = Int(min(UInt64(Self.chunkSize), bundle.info.size - position))
        let offset = position
        let loop = stream.eventLoop
        let allocator = ByteBufferAllocator()
        BlockingPool.shared.submit({ () throws -> ByteBuffer in
            var buffer = allocator.buffer(capacity: count)
            let n = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
                try syscall("pread(\(bundle.info.name))") { pread(bundle.descriptor.raw, raw.baseAddress, count, off_t(offset)) }
            }
            return buffer
        }) { result in
            loop.execute { [self] in
                readInFlight = false
                guard !ended else {
                    self.bundle = nil
                    return
                }
                switch result {
                case .success(let buffer) where buffer.readableBytes > 0:
                    position += UInt64(buffer.readableBytes)
                    sentThisRequest += buffer.readableBytes
                    app.countSent(buffer.readableBytes)
                    stream.write(buffer)
                    armIdleTimer()
                    pump()
                case .success:
                    // The file shrank under us: the client's checksum would fail; say so.
                    stream.reset(.appClosed)
                    end(completed: false)
                case .failure(let error):
                    app.logger.warning("update-server: \(bundle.info.name): \(error)", metadata: ["pk": "\(key)"])
                    stream.reset(.appClosed)
                    end(completed: false)
                }
            }
        }
    }
}
