import XCTest
@testable import SkywireWire

/// The decoder API the app frame codecs share (`ChatFrameDecoder`, `PtyFrameDecoder`,
/// `UpdateFrameDecoder`: one `AppFrameDecoder`), so the byte-exact example checks are written once.
protocol ExampleFrameDecoder {
    associatedtype Frame: Equatable
    init()
    var bufferedBytes: Int { get }
    mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8
    mutating func nextFrame() throws -> Frame?
}

extension AppFrameDecoder: ExampleFrameDecoder where Frame: Equatable {
    mutating func nextFrame() throws -> Frame? { try next() }
}

/// Each example encodes to exactly its hand-written bytes and decodes back to itself, alone and
/// with the whole list fed one byte at a time.
func assertFrameExamples<D: ExampleFrameDecoder>(
    _ examples: [(D.Frame, String)], decoder: D.Type, encode: (D.Frame) throws -> [UInt8],
    file: StaticString = #filePath, line: UInt = #line
) throws {
    for (frame, hex) in examples {
        let expected = [UInt8](hex: hex)
        XCTAssertEqual(try encode(frame), expected, "\(frame)", file: file, line: line)
        var one = D()
        one.feed(expected)
        XCTAssertEqual(try one.nextFrame(), frame, file: file, line: line)
        XCTAssertNil(try one.nextFrame(), file: file, line: line)
        XCTAssertEqual(one.bufferedBytes, 0, file: file, line: line)
    }
    let all = try examples.flatMap { try encode($0.0) }
    var bytewise = D()
    var frames: [D.Frame] = []
    for byte in all {
        bytewise.feed([byte])
        while let f = try bytewise.nextFrame() { frames.append(f) }
    }
    XCTAssertEqual(frames, examples.map(\.0), file: file, line: line)
}
