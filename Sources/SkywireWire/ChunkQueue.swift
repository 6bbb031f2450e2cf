// A FIFO of payload chunks with O(1) amortised push/pop and storage reuse (the per-stream send buffer).

struct ChunkQueue<Element> {
    private var storage: [Element] = []
    private var head = 0
    /// Compact when this many popped slots lead the array and they are at least half of it.
    private static var compactionThreshold: Int { 32 }

    var isEmpty: Bool { head == storage.count }
    var count: Int { storage.count - head }
    var first: Element? { isEmpty ? nil : storage[head] }

    mutating func append(_ element: Element) { storage.append(element) }

    mutating func replaceFirst(_ element: Element) {
        storage[head] = element
    }

    mutating func removeFirst() {
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= Self.compactionThreshold, head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
    }

    mutating func removeAll() {
        storage.removeAll(keepingCapacity: true)
        head = 0
    }
}
