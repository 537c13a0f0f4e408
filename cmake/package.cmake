# Install rules for lulld, lull, their configuration and systemd units, man
# pages, completion scripts and examples, and the Debian package (CPack DEB)
# that scripts/package builds into dist/.
#
#   cmake -S . -B build -DCMAKE_INSTALL_PREFIX=/usr
#   cmake --build build --target lulld lull lull_docs
#   cmake --install build --component lull      # or: cpack (scripts/package)
#
# With the prefix /usr (the package's), the configuration goes to /etc/lull
# and the units to /lib/systemd/system, where Debian bookworm keeps them.
# Everything here is in the install component `lull`, the package of the same
# name; the client library's rules (src/) belong to other components.
include(GNUInstallDirs)
# `cmake --install` and cpack install what is built; they do not first build
# every target (tests, benchmarks): scripts/package builds lulld, lull and
# lull_docs only.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

if(NOT DEFINED LULL_SYSTEMD_UNIT_DIR)
  if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
    set(LULL_SYSTEMD_UNIT_DIR "/lib/systemd/system")
  else()
    set(LULL_SYSTEMD_UNIT_DIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
  endif()
endif()
set(LULL_CONF_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/lull")
set(LULL_BIN_DIR "${CMAKE_INSTALL_FULL_BINDIR}")
set(LULL_DOC_DIR "${CMAKE_INSTALL_FULL_DOCDIR}")
set(LULL_DEB_MAINTAINER "lull maintainers <lull@lull.example.org>"
    CACHE STRING "Maintainer field of the Debian package")

set(pkg "${PROJECT_SOURCE_DIR}/packaging")
set(gen "${PROJECT_BINARY_DIR}/packaging")
configure_file("${pkg}/lulld.service.in" "${gen}/lulld.service" @ONLY)
configure_file("${pkg}/lull-worker@.service.in" "${gen}/lull-worker@.service" @ONLY)
configure_file("${pkg}/changelog.in" "${gen}/changelog" @ONLY)
# Debian wants the changelog compressed, reproducibly (no name or time in it).
execute_process(COMMAND gzip -9nc "${gen}/changelog" OUTPUT_FILE "${gen}/changelog.gz"
                RESULT_VARIABLE gzip_result)
if(NOT gzip_result EQUAL 0)
  message(FATAL_ERROR "gzip failed on ${gen}/changelog")
endif()

install(TARGETS lulld lull RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT lull)
install(FILES "${pkg}/lull.toml" DESTINATION "${LULL_CONF_DIR}" COMPONENT lull)
install(FILES "${gen}/lulld.service" "${gen}/lull-worker@.service"
        DESTINATION "${LULL_SYSTEMD_UNIT_DIR}" COMPONENT lull)
# Example broker configs; an installed lulld starts its local broker from
# local.conf here (<prefix>/bin/../share/lull/broker-config).
install(FILES
          "${PROJECT_SOURCE_DIR}/broker-config/local.conf"
          "${PROJECT_SOURCE_DIR}/broker-config/secure.conf"
          "${PROJECT_SOURCE_DIR}/broker-config/acl"
          "${PROJECT_SOURCE_DIR}/broker-config/compose.conf"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/lull/broker-config" COMPONENT lull)
install(PROGRAMS "${PROJECT_SOURCE_DIR}/scripts/lull-broker-user"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/lull" COMPONENT lull)
install(FILES "${PROJECT_SOURCE_DIR}/README.md" "${pkg}/copyright" "${gen}/changelog.gz"
        DESTINATION "${CMAKE_INSTALL_DOCDIR}" COMPONENT lull)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/docs/" DESTINATION "${CMAKE_INSTALL_DOCDIR}/docs"
        COMPONENT lull FILES_MATCHING PATTERN "*.md")

# Man pages and completion scripts, written at build time by lull_docgen from
# the definitions --help prints (src/cli/man.cpp, `lull completion`), the
# pages compressed as Debian wants them (gzip -n: no name or time, so the
# same source gives the same bytes). A cross build runs lull_docgen through
# CMAKE_CROSSCOMPILING_EMULATOR.
set(docgen "${PROJECT_BINARY_DIR}/docgen")
set(man_pages "${docgen}/man/lull.1" "${docgen}/man/lulld.8" "${docgen}/man/lull.toml.5")
set(completions "${docgen}/completions/lull" "${docgen}/completions/_lull")
list(TRANSFORM man_pages APPEND ".gz" OUTPUT_VARIABLE man_pages_gz)
add_custom_command(OUTPUT ${man_pages} ${man_pages_gz} ${completions}
  COMMAND lull_docgen "${docgen}"
  COMMAND gzip -9nkf ${man_pages}
  DEPENDS lull_docgen
  COMMENT "Writing lull's man pages and completion scripts"
  VERBATIM)
add_custom_target(lull_docs ALL DEPENDS ${man_pages_gz} ${completions})
install(FILES "${docgen}/man/lull.1.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man1" COMPONENT lull)
install(FILES "${docgen}/man/lull.toml.5.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man5"
        COMPONENT lull)
install(FILES "${docgen}/man/lulld.8.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man8"
        COMPONENT lull)
install(FILES "${docgen}/completions/lull"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" COMPONENT lull)
install(FILES "${docgen}/completions/_lull"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions" COMPONENT lull)

# The examples, as a user copies them: the workers' sources (and the Node.js
# worker's package.json, which names MQTT.js), the Home Assistant YAML and the
# Node-RED flow. Never what npm installs beside them, nor the test harness
# around the flow (settings.js, its package.json).
set(examples "${PROJECT_SOURCE_DIR}/examples")
set(examples_dest "${CMAKE_INSTALL_DOCDIR}/examples")
install(PROGRAMS "${examples}/python/lull_worker.py" DESTINATION "${examples_dest}/python"
        COMPONENT lull)
install(PROGRAMS "${examples}/node/lull-worker.js" DESTINATION "${examples_dest}/node"
        COMPONENT lull)
install(FILES "${examples}/node/package.json" DESTINATION "${examples_dest}/node" COMPONENT lull)
install(PROGRAMS "${examples}/shell/lull-lease.sh" DESTINATION "${examples_dest}/shell"
        COMPONENT lull)
install(FILES "${examples}/homeassistant/automations.yaml"
              "${examples}/homeassistant/dashboard.yaml"
        DESTINATION "${examples_dest}/homeassistant" COMPONENT lull)
install(FILES "${examples}/nodered/lull-flow.json" DESTINATION "${examples_dest}/nodered"
        COMPONENT lull)

# Lintian tags lull's package carries on purpose, each with its reason there.
install(FILES "${pkg}/lintian-overrides" DESTINATION "${CMAKE_INSTALL_DATADIR}/lintian/overrides"
        RENAME lull COMPONENT lull)

# -- the Debian package ---------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME lull)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "lull")
set(CPACK_PACKAGE_CONTACT "${LULL_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "lease heavy work to hosts when they are quiet, over MQTT")
set(CPACK_DEBIAN_LULL_DESCRIPTION
  "lulld watches the hosts of a small fleet (a Raspberry Pi, a laptop, a NUC),
scores how quiet each one is, and hands out leases for heavy work over an MQTT
broker only when a host can afford it. Home Assistant, Node-RED and
mosquitto_sub watch the same topics.

lull is the command line for workers and people: lull run, lull work,
lull submit, lull status. lulld.service runs lulld as an unprivileged,
sandboxed service; lull-worker@.service runs a worker.")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL lull)
set(CPACK_DEBIAN_LULL_PACKAGE_NAME lull)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
if(CMAKE_CROSSCOMPILING AND CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
endif()
# Debian's runtime libraries, by package name (the same on every architecture).
# tests/package/check-deb checks it against dpkg-shlibdeps on the native package.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "libc6 (>= 2.34), libstdc++6 (>= 11), libgcc-s1 (>= 3.0), libcaf-core0.17 (>= 0.17.6), libpaho-mqttpp3-1 (>= 1.2.0), libpaho-mqtt1.3 (>= 1.3.0), libspdlog1.10-fmt9, libfmt9 (>= 9.1.0+ds1), libsqlite3-0 (>= 3.20.0), libdate-tz3 (>= 3.0.0), libsystemd0, tzdata")
# lulld starts a local Mosquitto when no broker is configured.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "mosquitto")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "mosquitto-clients")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${pkg}/conffiles" "${pkg}/postinst" "${pkg}/prerm" "${pkg}/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
