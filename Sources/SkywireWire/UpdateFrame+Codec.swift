// Encoding and incremental decoding of `UpdateFrame` (docs/update.md "Delivery over the mesh").

extension UpdateFrame {
    /// The frame's bytes, or why it cannot be sent (a name, digest or list out of bounds).
    public func encoded() throws(UpdateProtocolError) -> [UInt8] {
        var payload: [UInt8] = []
        switch self {
        case .list:
            break
        case .get(let name, let offset):
            if let problem = UpdateProtocol.nameProblem(name) { throw UpdateProtocolError(problem) }
            payload.appendBigEndian(offset)
            payload.append(contentsOf: name.utf8)
        case .listOK(let entries):
            guard entries.count <= UpdateProtocol.maxEntries else {
                throw UpdateProtocolError("\(entries.count) bundles, at most \(UpdateProtocol.maxEntries) per list")
            }
            payload.appendBigEndian(UInt16(entries.count))
            for entry in entries {
                if let problem = UpdateProtocol.nameProblem(entry.name) { throw UpdateProtocolError(problem) }
                try Self.checkDigest(entry.sha256)
                payload.appendBigEndian(entry.size)
                payload.append(contentsOf: entry.sha256)
                payload.append(UInt8(entry.name.utf8.count))
                payload.append(contentsOf: entry.name.utf8)
            }
        case .getOK(let header):
            guard header.offset <= header.size else { throw UpdateProtocolError("offset \(header.offset) past the size \(header.size)") }
            try Self.checkDigest(header.sha256)
            payload.appendBigEndian(header.size)
            payload.appendBigEndian(header.offset)
            payload.append(contentsOf: header.sha256)
        case .error(let code, let message):
            payload.append(code.rawValue)
            payload.append(contentsOf: Self.truncatedUTF8(message, to: UpdateProtocol.maxErrorMessage))
        }
        var out: [UInt8] = [UpdateProtocol.version, type.rawValue]
        out.appendBigEndian(UInt32(payload.count))
        out.append(contentsOf: payload)
        return out
    }

    private static func checkDigest(_ digest: [UInt8]) throws(UpdateProtocolError) {
        guard digest.count == UpdateProtocol.digestLength else {
            throw UpdateProtocolError("a SHA-256 digest has \(UpdateProtocol.digestLength) bytes, got \(digest.count)")
        }
    }

    /// At most `limit` bytes of `text`, cut at a character boundary.
    static func truncatedUTF8(_ text: String, to limit: Int) -> [UInt8] {
        var out: [UInt8] = []
        for character in text {
            let bytes = Array(character.utf8)
            guard out.count + bytes.count <= limit else { break }
            out += bytes
        }
        return out
    }

    /// One payload of type `type` (known from the header); refuses a malformed payload.
    public static func decode(type: UpdateFrameType, payload p: ArraySlice<UInt8>) throws(UpdateProtocolError) -> UpdateFrame {
        var r = AppPayloadReader<UpdateFrameType, UpdateProtocolError>(bytes: p, type: type)
        let frame: UpdateFrame
        switch type {
        case .list:
            frame = .list
        case .get:
            let offset = try r.u64()
            frame = .get(name: try r.name(r.remaining), offset: offset)
        case .listOK:
            let count = Int(try r.u16())
            guard count <= UpdateProtocol.maxEntries else {
                throw UpdateProtocolError("listOK: \(count) bundles, at most \(UpdateProtocol.maxEntries)")
            }
            var entries: [UpdateBundleInfo] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let size = try r.u64()
                let digest = Array(try r.take(UpdateProtocol.digestLength))
                let name = try r.name(Int(try r.u8()))
                entries.append(UpdateBundleInfo(name: name, size: size, sha256: digest))
            }
            frame = .listOK(entries)
        case .getOK:
            let size = try r.u64(), offset = try r.u64()
            guard offset <= size else { throw UpdateProtocolError("getOK: offset \(offset) past the size \(size)") }
            frame = .getOK(UpdateGetHeader(size: size, offset: offset, sha256: Array(try r.take(UpdateProtocol.digestLength))))
        case .error:
            let raw = try r.u8()
            guard let code = UpdateErrorCode(rawValue: raw) else { throw UpdateProtocolError("error: unknown code \(raw)") }
            guard r.remaining <= UpdateProtocol.maxErrorMessage else {
                throw UpdateProtocolError("error: a message of \(r.remaining) bytes, at most \(UpdateProtocol.maxErrorMessage)")
            }
            frame = .error(code, try r.utf8(r.remaining))
        }
        guard r.remaining == 0 else { throw UpdateProtocolError("\(type): \(r.remaining) bytes after the payload") }
        return frame
    }
}

extension UpdateFrame: AppFrame {
    public static var frameHeader: AppFrameHeader { UpdateProtocol.frameHeader }
}

/// Splits a byte stream into update frames (`AppFrameDecoder`): version, type, then length are
/// checked from the header. After `getOK` the stream carries raw bytes, which the caller takes with
/// `takeRemainder()` and no longer feeds here.
public typealias UpdateFrameDecoder = AppFrameDecoder<UpdateFrame>

extension AppPayloadReader where Failure == UpdateProtocolError {
    /// A bundle name of `n` bytes (`UpdateProtocol.nameProblem`).
    mutating func name(_ n: Int) throws(UpdateProtocolError) -> String {
        let name = try utf8(n)
        if let problem = UpdateProtocol.nameProblem(name) { throw failure(problem) }
        return name
    }
}
