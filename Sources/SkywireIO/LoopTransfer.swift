/// Carries a value to the event loop that owns it (the value is only touched there after the hop).
public struct LoopTransfer<Value>: @unchecked Sendable {
    // @unchecked Sendable: created on or for one loop and used only after the hop back to it.
    public let value: Value
    public init(value: Value) { self.value = value }
}
