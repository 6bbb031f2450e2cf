// The update-server app's wire protocol (docs/update.md "Delivery over the mesh", PROTOCOL.md §6):
// one mux stream to port 24 carries one request. Frames are `version:u8 | type:u8 |
// length:u32 big-endian | payload[length]`. The client sends one `list` or `get`; the server
// answers with one `listOK`, `getOK` or `error` frame. After `getOK` the rest of the stream is the
// bundle's raw bytes from the requested offset to its end, then FIN. Pure: bytes in, frames out.

/// A bundle as the server lists it.
public struct UpdateBundleInfo: Sendable, Equatable {
    /// A file name of the served directory (`UpdateProtocol.nameProblem` is nil for it).
    public var name: String
    public var size: UInt64
    /// SHA-256 of the whole file.
    public var sha256: [UInt8]

    public init(name: String, size: UInt64, sha256: [UInt8]) {
        self.name = name
        self.size = size
        self.sha256 = sha256
    }
}

/// The answer to `get`, before the bytes: the whole file's size and digest, and where the bytes start.
public struct UpdateGetHeader: Sendable, Equatable {
    public var size: UInt64
    public var offset: UInt64
    public var sha256: [UInt8]

    public init(size: UInt64, offset: UInt64, sha256: [UInt8]) {
        self.size = size
        self.offset = offset
        self.sha256 = sha256
    }
}

/// Why the server refused a request (`error`'s code byte).
public enum UpdateErrorCode: UInt8, Sendable, CaseIterable {
    /// No bundle of that name in the served directory.
    case noSuchBundle = 1
    /// A malformed request, a name that is not a bundle name, a frame the server does not take.
    case badRequest = 2
    /// `get`'s offset is past the file's end.
    case badOffset = 3
    /// The server's limit of transfers at once (or per key) is reached: try again later.
    case busy = 4
    /// The file could not be read.
    case readFailed = 5
}

public enum UpdateFrameType: UInt8, Sendable, CaseIterable {
    case list = 0x01, get = 0x02
    case listOK = 0x11, getOK = 0x12, error = 0x1F
}

/// One frame (PROTOCOL.md §6, "Update server").
public enum UpdateFrame: Sendable, Equatable {
    /// Client: the bundles served.
    case list
    /// Client: bundle `name` from byte `offset`.
    case get(name: String, offset: UInt64)
    case listOK([UpdateBundleInfo])
    case getOK(UpdateGetHeader)
    case error(UpdateErrorCode, String)

    public var type: UpdateFrameType {
        switch self {
        case .list: .list
        case .get: .get
        case .listOK: .listOK
        case .getOK: .getOK
        case .error: .error
        }
    }
}

/// A frame the decoder refuses, or one the encoder cannot send.
public struct UpdateProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The protocol's limits and constants.
public enum UpdateProtocol {
    public static let version: UInt8 = 1
    /// version (1) + type (1) + length (4).
    public static let headerLength = frameHeader.length
    /// `version | type | length:u32`; a header is refused for its version, then its type, then its length.
    public static let frameHeader = AppFrameHeader(version: version, lengthBytes: MemoryLayout<UInt32>.size,
                                                   maxPayload: maxPayload, order: .typeThenLength)
    /// The largest payload: a frame announcing more is refused from its header.
    public static let maxPayload = 64 * 1024
    /// The most bundles a `listOK` carries (the server lists the first ones by name).
    public static let maxEntries = 128
    /// A bundle name's longest UTF-8 form (a Linux file name).
    public static let maxNameBytes = 255
    /// The most bytes of an `error` message.
    public static let maxErrorMessage = 1024
    public static let digestLength = 32
    /// Every served name ends so.
    public static let bundleSuffix = ".raucb"
    /// `getOK`'s payload: size, offset, digest.
    static let getOKLength = 8 + 8 + digestLength
    /// One `listOK` entry without its name: size, digest, name length.
    static let entryOverhead = 8 + digestLength + 1

    /// Why `name` cannot name a bundle, nil when it can: 1...255 bytes of UTF-8 ending in `.raucb`,
    /// no `/`, no control character, not starting with `.` (so never `.` or `..`).
    public static func nameProblem(_ name: String) -> String? {
        let count = name.utf8.count
        guard count > bundleSuffix.utf8.count else { return "a bundle name is NAME\(bundleSuffix)" }
        guard count <= maxNameBytes else { return "a bundle name has at most \(maxNameBytes) bytes, got \(count)" }
        guard name.hasSuffix(bundleSuffix) else { return "a bundle name ends in \(bundleSuffix)" }
        guard !name.hasPrefix(".") else { return "a bundle name does not start with '.'" }
        guard !name.utf8.contains(UInt8(ascii: "/")) else { return "a bundle name contains no '/'" }
        guard !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) else {
            return "a bundle name contains no control character"
        }
        return nil
    }
}
