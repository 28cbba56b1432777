// The dashboard page the admin server serves at GET /: one self-contained
// HTML document (its CSS and JS inline, nothing fetched from elsewhere).
// The source is runtime/admin/dashboard.html; CMake embeds it at build
// time (runtime/admin/dashboard_page.cpp.in).
#pragma once

#include <string>

namespace troupe::admin {

/// The page, as served.
const std::string& dashboard_html();

} // namespace troupe::admin
