// Encoding and incremental decoding of `ChatFrame` (docs/skychat.md "Wire", PROTOCOL.md §9).

extension ChatFrame {
    /// The frame's bytes, or the reason the frame cannot be sent (text or name out of bounds).
    public func encoded() throws(ChatProtocolError) -> [UInt8] {
        var payload: [UInt8] = []
        switch self {
        case .message(let m):
            if let problem = ChatProtocol.textProblem(m.text) { throw ChatProtocolError(problem) }
            payload.reserveCapacity(ChatProtocol.maxMessageOverhead + m.text.utf8.count)
            payload.appendBigEndian(m.id)
            payload.appendBigEndian(m.timeMillis)
            if let group = m.group {
                if let problem = ChatProtocol.groupNameProblem(group.name) { throw ChatProtocolError(problem) }
                payload.append(ChatProtocol.groupFlag)
                payload.appendBigEndian(group.id)
                payload.append(UInt8(group.name.utf8.count))
                payload.append(contentsOf: group.name.utf8)
            } else {
                payload.append(0)
            }
            payload.append(contentsOf: m.text.utf8)
        case .ack(let id, let status):
            payload.appendBigEndian(id)
            payload.append(status.rawValue)
        }
        var out: [UInt8] = [ChatProtocol.version, type.rawValue]
        out.appendBigEndian(UInt16(payload.count))
        out.append(contentsOf: payload)
        return out
    }

    /// Decodes one payload of type `rawType`; refuses unknown types and malformed payloads.
    static func decode(type rawType: UInt8, payload p: ArraySlice<UInt8>) throws(ChatProtocolError) -> ChatFrame {
        guard let type = ChatFrameType(rawValue: rawType) else {
            throw ChatProtocolError("unknown frame type 0x\(String(rawType, radix: 16))")
        }
        var r = AppPayloadReader<ChatFrameType, ChatProtocolError>(bytes: p, type: type)
        switch type {
        case .message:
            let id = try r.u64(), time = try r.u64(), flags = try r.u8()
            guard flags & ~ChatProtocol.groupFlag == 0 else { throw ChatProtocolError("message: unknown flags 0x\(String(flags, radix: 16))") }
            var group: ChatGroupRef?
            if flags & ChatProtocol.groupFlag != 0 {
                let groupID = try r.u64()
                let name = try r.utf8(Int(try r.u8()))
                if let problem = ChatProtocol.groupNameProblem(name) { throw ChatProtocolError("message: \(problem)") }
                group = ChatGroupRef(id: groupID, name: name)
            }
            let text = try r.utf8(r.remaining)
            if let problem = ChatProtocol.textProblem(text) { throw ChatProtocolError("message: \(problem)") }
            return .message(ChatWireMessage(id: id, timeMillis: time, group: group, text: text))
        case .ack:
            guard p.count == ChatProtocol.ackLength else { throw ChatProtocolError("ack: \(p.count) bytes, expected \(ChatProtocol.ackLength)") }
            let id = try r.u64(), raw = try r.u8()
            guard let status = ChatAckStatus(rawValue: raw) else { throw ChatProtocolError("ack: unknown status \(raw)") }
            return .ack(id: id, status: status)
        }
    }
}

/// Splits a byte stream into frames. Holds at most one partial frame (header + `maxPayload`)
/// plus what one `feed` brought; a wrong version, an unknown type or a length over
/// `maxPayload` is refused from the header, before the payload arrives. After an error every
/// call throws it again and nothing is buffered.
public struct ChatFrameDecoder: Sendable {
    private var buffer = FrameBuffer()
    private var failed: ChatProtocolError?

    public init() {}

    /// Bytes held that do not make a whole frame yet.
    public var bufferedBytes: Int { buffer.available }

    public mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        guard failed == nil else { return }
        buffer.feed(bytes)
    }

    /// The next whole frame, nil when more bytes are needed.
    public mutating func next() throws(ChatProtocolError) -> ChatFrame? {
        if let failed { throw failed }
        do throws(ChatProtocolError) {
            let available = buffer.available
            guard available >= ChatProtocol.headerLength else { return nil }
            let version = buffer[0], type = buffer[1]
            guard version == ChatProtocol.version else {
                throw ChatProtocolError("protocol version \(version), expected \(ChatProtocol.version)")
            }
            guard ChatFrameType(rawValue: type) != nil else { throw ChatProtocolError("unknown frame type 0x\(String(type, radix: 16))") }
            let length = Int(buffer[2]) << 8 | Int(buffer[3])
            guard length <= ChatProtocol.maxPayload else {
                throw ChatProtocolError("frame of \(length) bytes, at most \(ChatProtocol.maxPayload)")
            }
            guard available >= ChatProtocol.headerLength + length else { return nil }
            let frame = try ChatFrame.decode(type: type, payload: buffer.bytes(at: ChatProtocol.headerLength, count: length))
            buffer.consume(ChatProtocol.headerLength + length)
            return frame
        } catch {
            failed = error
            buffer.clear()
            throw error
        }
    }
}
