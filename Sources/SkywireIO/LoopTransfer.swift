/// Carries a value to the event loop that owns it (the value is only touched there after the hop).
public struct LoopTransfer<Value>: @unchecked Sendable {
    // @unchecked Sendable: created on or for one loop and used only after the hop back to it.
    public let value: Value
    public init(value: Value) { self.value = value }
}

/// A weak reference carried by a task for the loop that owns the object (a task made once and
/// queued many times must not keep its owner alive).
public final class LoopWeak<Object: AnyObject>: @unchecked Sendable {
    // @unchecked Sendable: `value` is set before a task carrying it can be queued and read only
    // on the object's event loop, where those tasks run.
    public weak var value: Object?
    public init(_ value: Object? = nil) { self.value = value }
}
