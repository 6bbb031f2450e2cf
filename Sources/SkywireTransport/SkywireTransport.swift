// SkywireTransport
