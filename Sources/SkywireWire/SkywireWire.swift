// SkywireWire
