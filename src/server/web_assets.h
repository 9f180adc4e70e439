// The web UI's files (web/ in the source tree), compiled into the binary: CMake turns each file
// into bytes in a generated source (cmake/web_embed.cmake), so `aigc serve` needs no files at run
// time and no separate build step.
#pragma once

#include <string_view>

namespace aigc::server {

struct WebAsset {
  std::string_view path;          // "/index.html", "/app.js", ...
  std::string_view content_type;  // "text/html; charset=utf-8", ...
  std::string_view data;
};

// The asset served at `path` ("/" is "/index.html"); nullptr when there is none.
const WebAsset* web_asset_find(std::string_view path);

}  // namespace aigc::server
