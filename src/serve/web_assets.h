#pragma once
// The web app's files (src/serve/web and Debian's Chart.js), compiled into the binary by
// cmake/embed.cmake so `pricer serve` needs nothing at run time and works offline.
#include <cstddef>
#include <span>

namespace pricer::serve {

struct WebAsset {
  const char* path;  // "/index.html", "/app.js", "/chart.js", ...
  const char* content_type;
  const unsigned char* data;
  std::size_t size;
};

std::span<const WebAsset> web_assets();

}  // namespace pricer::serve
