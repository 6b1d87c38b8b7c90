// PNG from SVG through a standard converter: rsvg-convert (Debian's librsvg2-bin), run as a
// child process. No PNG encoding of our own.
#pragma once

#include <string>

namespace pipeproof {

// Writes `svg` as a PNG to `png_path`, scaled by `zoom` (2: twice the SVG's pixel size, sharp on
// high-density screens). Throws InputError when rsvg-convert is missing or fails, saying so.
void WritePng(const std::string& svg, const std::string& png_path, double zoom = 2.0);

// Whether rsvg-convert can be run here.
bool HavePngConverter();

}  // namespace pipeproof
