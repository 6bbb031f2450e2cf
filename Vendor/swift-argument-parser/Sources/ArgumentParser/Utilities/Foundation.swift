//===----------------------------------------------------------------------===//
//
// This source file is part of the Swift Argument Parser open source project
//
// Copyright (c) 2025 Apple Inc. and the Swift project authors
// Licensed under Apache License v2.0 with Runtime Library Exception
//
// See https://swift.org/LICENSE.txt for license information
//
//===----------------------------------------------------------------------===//

// skywire patch (PATCHES.md): this file no longer imports Foundation/FoundationEssentials,
// which cost the static binary ~7 MB. `describe()` is `String(describing:)` (upstream's
// FoundationEssentials branch, minus `LocalizedError`), and `JSONEncoder.encode` (only for
// `--experimental-dump-help`) is a small Encoder writing what Foundation's JSONEncoder writes
// with `.prettyPrinted` and `.sortedKeys`.

extension Error {
  func describe() -> String {
    String(describing: self)
  }
}

enum JSONEncoder {
  /// The value as pretty-printed JSON with sorted keys, or "" if it cannot be encoded
  /// (as upstream: a non-finite floating-point number).
  static func encode<T: Encodable>(_ value: T) -> String {
    let root = JSONNode()
    do {
      try value.encode(to: JSONTreeEncoder(node: root, codingPath: []))
    } catch {
      return ""
    }
    var out = ""
    root.write(to: &out, indent: 0)
    return out
  }
}

/// One JSON value under construction; a class so that containers handed out by an
/// encoder keep writing into the tree after the encoder is gone.
final class JSONNode {
  enum Content {
    case empty
    case literal(String)
    case array([JSONNode])
    case object([String: JSONNode])
  }

  var content: Content = .empty

  /// Two spaces per level and `"key" : value`, as Foundation's `.prettyPrinted`.
  static let indentUnit = "  "

  func write(to out: inout String, indent: Int) {
    switch content {
    case .empty:
      out += "{}"
    case .literal(let text):
      out += text
    case .array(let elements):
      guard !elements.isEmpty else { out += "[]"; return }
      let inner = String(repeating: Self.indentUnit, count: indent + 1)
      out += "[\n"
      for (index, element) in elements.enumerated() {
        out += inner
        element.write(to: &out, indent: indent + 1)
        out += index == elements.count - 1 ? "\n" : ",\n"
      }
      out += String(repeating: Self.indentUnit, count: indent) + "]"
    case .object(let members):
      guard !members.isEmpty else { out += "{}"; return }
      let inner = String(repeating: Self.indentUnit, count: indent + 1)
      // `.sortedKeys`: byte order of the UTF-8 keys.
      let sorted = members.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
      out += "{\n"
      for (index, member) in sorted.enumerated() {
        out += inner + Self.quoted(member.key) + " : "
        member.value.write(to: &out, indent: indent + 1)
        out += index == sorted.count - 1 ? "\n" : ",\n"
      }
      out += String(repeating: Self.indentUnit, count: indent) + "}"
    }
  }

  /// A JSON string literal (RFC 8259 §7); `/` escaped as Foundation does by default.
  static func quoted(_ string: String) -> String {
    var out = "\""
    for scalar in string.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "/": out += "\\/"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case "\u{08}": out += "\\b"
      case "\u{0C}": out += "\\f"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }
}

/// The `Encoder` behind `JSONEncoder.encode`: every value encodes into one `JSONNode`.
struct JSONTreeEncoder: Encoder {
  let node: JSONNode
  var codingPath: [any CodingKey]
  var userInfo: [CodingUserInfoKey: Any] { [:] }

  func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
    if case .object = node.content {} else { node.content = .object([:]) }
    return KeyedEncodingContainer(JSONKeyedContainer<Key>(node: node, codingPath: codingPath))
  }

  func unkeyedContainer() -> any UnkeyedEncodingContainer {
    if case .array = node.content {} else { node.content = .array([]) }
    return JSONUnkeyedContainer(node: node, codingPath: codingPath)
  }

  func singleValueContainer() -> any SingleValueEncodingContainer {
    JSONSingleValueContainer(node: node, codingPath: codingPath)
  }
}

struct JSONKeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
  let node: JSONNode
  var codingPath: [any CodingKey]

  private func child(_ key: Key) -> JSONNode { child(named: key.stringValue) }

  private func child(named name: String) -> JSONNode {
    let child = JSONNode()
    if case .object(var members) = node.content {
      members[name] = child
      node.content = .object(members)
    }
    return child
  }

  mutating func encodeNil(forKey key: Key) throws {
    child(key).content = .literal("null")
  }

  mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
    try value.encode(to: JSONTreeEncoder(node: child(key), codingPath: codingPath + [key]))
  }

  mutating func nestedContainer<NestedKey: CodingKey>(
    keyedBy keyType: NestedKey.Type, forKey key: Key
  ) -> KeyedEncodingContainer<NestedKey> {
    JSONTreeEncoder(node: child(key), codingPath: codingPath + [key]).container(keyedBy: keyType)
  }

  mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
    JSONTreeEncoder(node: child(key), codingPath: codingPath + [key]).unkeyedContainer()
  }

  /// Under the key "super", as Foundation's JSONEncoder.
  mutating func superEncoder() -> any Encoder {
    JSONTreeEncoder(node: child(named: "super"), codingPath: codingPath)
  }

  mutating func superEncoder(forKey key: Key) -> any Encoder {
    JSONTreeEncoder(node: child(key), codingPath: codingPath + [key])
  }
}

struct JSONUnkeyedContainer: UnkeyedEncodingContainer {
  let node: JSONNode
  var codingPath: [any CodingKey]
  var count: Int {
    if case .array(let elements) = node.content { return elements.count }
    return 0
  }

  private func next() -> JSONNode {
    let child = JSONNode()
    if case .array(var elements) = node.content {
      elements.append(child)
      node.content = .array(elements)
    }
    return child
  }

  mutating func encodeNil() throws {
    next().content = .literal("null")
  }

  mutating func encode<T: Encodable>(_ value: T) throws {
    try value.encode(to: JSONTreeEncoder(node: next(), codingPath: codingPath))
  }

  mutating func nestedContainer<NestedKey: CodingKey>(
    keyedBy keyType: NestedKey.Type
  ) -> KeyedEncodingContainer<NestedKey> {
    JSONTreeEncoder(node: next(), codingPath: codingPath).container(keyedBy: keyType)
  }

  mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
    JSONTreeEncoder(node: next(), codingPath: codingPath).unkeyedContainer()
  }

  mutating func superEncoder() -> any Encoder {
    JSONTreeEncoder(node: next(), codingPath: codingPath)
  }
}

/// Where the primitives are written; keyed and unkeyed containers reach it through
/// each primitive's own `encode(to:)`.
struct JSONSingleValueContainer: SingleValueEncodingContainer {
  let node: JSONNode
  var codingPath: [any CodingKey]

  mutating func encodeNil() throws { node.content = .literal("null") }
  mutating func encode(_ value: Bool) throws { node.content = .literal(value ? "true" : "false") }
  mutating func encode(_ value: String) throws { node.content = .literal(JSONNode.quoted(value)) }
  mutating func encode(_ value: Double) throws { try encodeFloat(value) }
  mutating func encode(_ value: Float) throws { try encodeFloat(value) }
  mutating func encode(_ value: Int) throws { node.content = .literal(String(value)) }
  mutating func encode(_ value: Int8) throws { node.content = .literal(String(value)) }
  mutating func encode(_ value: Int16) throws { node.content = .literal(String(value)) }
  mutating func encode(_ value: Int32) throws { node.content = .literal(String(value)) }
  mutating func encode(_ value: Int64) throws { node.content = .literal(String(value)) }
  mutating func encode(_ value: UInt) throws { node.content = .literal(String(value)) }
  mutating func encode(_ value: UInt8) throws { node.content = .literal(String(value)) }
  mutating func encode(_ value: UInt16) throws { node.content = .literal(String(value)) }
  mutating func encode(_ value: UInt32) throws { node.content = .literal(String(value)) }
  mutating func encode(_ value: UInt64) throws { node.content = .literal(String(value)) }

  mutating func encode<T: Encodable>(_ value: T) throws {
    try value.encode(to: JSONTreeEncoder(node: node, codingPath: codingPath))
  }

  /// JSON has no NaN or infinity (RFC 8259 §6): refused, as Foundation's default strategy does.
  private func encodeFloat<F: BinaryFloatingPoint & LosslessStringConvertible>(_ value: F) throws {
    guard value.isFinite else {
      throw EncodingError.invalidValue(
        value, .init(codingPath: codingPath, debugDescription: "\(value) is not valid JSON"))
    }
    node.content = .literal(String(value))
  }
}
