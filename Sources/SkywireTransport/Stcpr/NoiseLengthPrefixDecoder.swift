import NIOCore

/// Splits a TCP byte stream into Noise messages framed with a 2-byte big-endian length
/// (Noise spec §13; docs/PROTOCOL.md §3). A zero length is a protocol error.
struct NoiseLengthPrefixDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    static let prefixLength = 2

    struct ZeroLengthFrame: Error, CustomStringConvertible {
        var description: String { "zero-length stcpr frame" }
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) else { return .needMoreData }
        guard length > 0 else { throw ZeroLengthFrame() }
        guard buffer.readableBytes >= Self.prefixLength + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: Self.prefixLength)
        let frame = buffer.readSlice(length: Int(length))!
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}
