-- mcacm-xml.lua: show the XML bodies of mcacm-sip exchanges with Wireshark's XML dissector.
--
-- Wireshark hands a SIP body to the dissector registered for its Content-Type in the
-- "media_type" table; the MC types below are not registered by default, so their bodies show
-- as opaque "Media Type" bytes.  Bind them to the generic XML dissector (the approach of
-- Nemergent's mc-xml.lua, https://github.com/nemergent/MCPTT-Wireshark-Dissector).
--
-- Use once:     wireshark -X lua_script:examples/wireshark/mcacm-xml.lua FILE.pcap
--               tshark    -X lua_script:examples/wireshark/mcacm-xml.lua -r FILE.pcap -V
-- Use always:   copy this file into the personal Lua plugins folder
--               (Help > About Wireshark > Folders > Personal Lua Plugins).

local xml = Dissector.get("xml")
local media_type = DissectorTable.get("media_type")

for _, content_type in ipairs({
    "application/vnd.mcacm-sip.acm+xml",     -- ACM flows (TS 23.280 10.17), our MESSAGE bodies
    "application/vnd.3gpp.mcptt-info+xml",   -- TS 24.379 F.1, in SUBSCRIBE/PUBLISH multiparts
    "application/simple-filter+xml",         -- RFC 4661 event filter, in SUBSCRIBE multiparts
    "application/pidf+xml",                  -- RFC 3863 presence (functional alias NOTIFY/PUBLISH)
}) do
    media_type:add(content_type, xml)
end
