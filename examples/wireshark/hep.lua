-- hep.lua: a HEPv3 (Homer Encapsulation Protocol) dissector for Wireshark versions without one,
-- so that what `[capture] hep` sends (docs/cli.md "Homer / HEP") can be read in a capture
-- of the collector's port: the chunks (addresses, ports, time, capture id, correlation id) and
-- the SIP message inside, handed to Wireshark's SIP dissector.
--
-- Use:   tshark -X lua_script:examples/wireshark/hep.lua -d udp.port==9060,hep -r hep.pcap
-- A Wireshark that dissects HEP itself keeps its own "hep" (this script then does nothing).

local found, native = pcall(Dissector.get, "hep")  -- raises or gives nil when there is none
if found and native ~= nil then
    return
end

local hep = Proto("hep", "Homer Encapsulation Protocol v3")
local f = {
    length = ProtoField.uint16("hep.length", "Total length"),
    family = ProtoField.uint8("hep.ip_family", "IP family"),
    proto = ProtoField.uint8("hep.ip_proto", "IP protocol"),
    src = ProtoField.ipv4("hep.src_ip4", "Source IPv4"),
    dst = ProtoField.ipv4("hep.dst_ip4", "Destination IPv4"),
    src6 = ProtoField.ipv6("hep.src_ip6", "Source IPv6"),
    dst6 = ProtoField.ipv6("hep.dst_ip6", "Destination IPv6"),
    sport = ProtoField.uint16("hep.src_port", "Source port"),
    dport = ProtoField.uint16("hep.dst_port", "Destination port"),
    secs = ProtoField.uint32("hep.timestamp", "Timestamp (s)"),
    usecs = ProtoField.uint32("hep.timestamp_us", "Timestamp (us)"),
    ptype = ProtoField.uint8("hep.proto_type", "Protocol type"),
    capture_id = ProtoField.uint32("hep.capture_id", "Capture agent id"),
    password = ProtoField.string("hep.auth_key", "Auth key"),
    correlation = ProtoField.string("hep.correlation_id", "Correlation id"),
    chunk = ProtoField.bytes("hep.chunk", "Chunk"),
}
hep.fields = {f.length, f.family, f.proto, f.src, f.dst, f.src6, f.dst6, f.sport, f.dport,
              f.secs, f.usecs, f.ptype, f.capture_id, f.password, f.correlation, f.chunk}

local by_type = {[0x01] = f.family, [0x02] = f.proto, [0x03] = f.src, [0x04] = f.dst,
                 [0x05] = f.src6, [0x06] = f.dst6, [0x07] = f.sport, [0x08] = f.dport,
                 [0x09] = f.secs, [0x0a] = f.usecs, [0x0b] = f.ptype, [0x0c] = f.capture_id,
                 [0x0e] = f.password, [0x11] = f.correlation}
local sip = Dissector.get("sip")

function hep.dissector(tvb, pinfo, tree)
    if tvb:len() < 6 or tvb(0, 4):string() ~= "HEP3" then
        return 0
    end
    pinfo.cols.protocol = "HEP3"
    local root = tree:add(hep, tvb(), "HEPv3")
    root:add(f.length, tvb(4, 2))
    local total = math.min(tvb(4, 2):uint(), tvb:len())
    local at = 6
    while at + 6 <= total do
        local vendor, kind, len = tvb(at, 2):uint(), tvb(at + 2, 2):uint(), tvb(at + 4, 2):uint()
        if len < 6 or at + len > total then
            break
        end
        local value = tvb(at + 6, len - 6)
        if vendor == 0 and kind == 0x0f then
            sip:call(value:tvb(), pinfo, tree)  -- the captured SIP message
        elseif vendor == 0 and by_type[kind] ~= nil then
            root:add(by_type[kind], value)
        else
            root:add(f.chunk, tvb(at, len))
        end
        at = at + len
    end
    return total
end

DissectorTable.get("udp.port"):add_for_decode_as(hep)
