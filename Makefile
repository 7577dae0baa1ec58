# For C users and packagers; the scripts do the work.
#   make                              build libtinyinfer.so for this machine (scripts/build-lib.sh)
#   make install PREFIX=/usr/local    header, library with SONAME, tinyinfer.pc (scripts/install.sh)
#   make uninstall PREFIX=/usr/local
#   make wheel                        a manylinux wheel that installs without Swift (scripts/build-wheel.sh)
#   make test                         every test (scripts/test.sh)
# Variables: PREFIX (default /usr/local), LIBDIR (default $(PREFIX)/lib), DESTDIR (staging).
PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
LIB := python/tinyinfer/lib/libtinyinfer.so

all:
	scripts/build-lib.sh >/dev/null

# Builds the library only when there is none (run `make` first to rebuild it).
$(LIB):
	scripts/build-lib.sh >/dev/null

install: $(LIB)
	LIBDIR="$(LIBDIR)" DESTDIR="$(DESTDIR)" scripts/install.sh "$(PREFIX)"

uninstall:
	rm -f "$(DESTDIR)$(PREFIX)/include/tinyinfer.h" "$(DESTDIR)$(LIBDIR)/pkgconfig/tinyinfer.pc" \
	  "$(DESTDIR)$(LIBDIR)"/libtinyinfer.so "$(DESTDIR)$(LIBDIR)"/libtinyinfer.so.*

wheel:
	scripts/build-wheel.sh

test:
	scripts/test.sh

.PHONY: all install uninstall wheel test
