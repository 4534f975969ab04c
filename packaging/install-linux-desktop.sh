#!/usr/bin/env sh
# Add GemmaDesk to the Linux desktop's application menu (for this user only; no root needed).
#
#   ./install-desktop.sh              # from inside the unpacked GemmaDesk folder (build.py copies it there)
#   packaging/install-linux-desktop.sh [BUNDLE_DIR]   # from the source tree; default dist/GemmaDesk
#   ... --uninstall                   # remove what it installed
#
# Installs $XDG_DATA_HOME/applications/dev.gemmadesk.GemmaDesk.desktop (named after the app id, so that
# Wayland compositors match the running window to it) with Exec pointing at the bundle's executable, and
# the icon into $XDG_DATA_HOME/icons/hicolor (PNG sizes 16-512 and the SVG). Move the bundle? Run it again.
set -eu

APP_ID="dev.gemmadesk.GemmaDesk"   # = gemmadesk.APP_ID (tests/packaging checks they agree)
EXE_NAME="GemmaDesk"
ICON_NAME="gemmadesk"
SIZES="16 24 32 48 64 128 256 512"

here=$(cd "$(dirname "$0")" && pwd)
uninstall=0
bundle=""
for arg in "$@"; do
    case "$arg" in
        --uninstall) uninstall=1 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) bundle=$arg ;;
    esac
done
if [ -z "$bundle" ]; then
    if [ -x "$here/$EXE_NAME" ]; then bundle=$here; else bundle="$here/../dist/$EXE_NAME"; fi
fi

data_home=${XDG_DATA_HOME:-$HOME/.local/share}
apps_dir="$data_home/applications"
icons_dir="$data_home/icons/hicolor"
desktop_file="$apps_dir/$APP_ID.desktop"

refresh_caches() {
    # Menus pick the change up by themselves on most desktops; these make it immediate where present.
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$apps_dir" || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$icons_dir" 2>/dev/null || true
}

if [ "$uninstall" = 1 ]; then
    rm -f "$desktop_file" "$icons_dir/scalable/apps/$ICON_NAME.svg"
    for size in $SIZES; do rm -f "$icons_dir/${size}x${size}/apps/$ICON_NAME.png"; done
    refresh_caches
    echo "removed $desktop_file and the $ICON_NAME icons"
    exit 0
fi

abs_bundle=$(cd "$bundle" 2>/dev/null && pwd) || {
    echo "no GemmaDesk bundle at $bundle (build it: python3 bootstrap.py bundle)" >&2; exit 1; }
bundle=$abs_bundle
exe="$bundle/$EXE_NAME"
[ -x "$exe" ] || { echo "$exe is not an executable GemmaDesk bundle" >&2; exit 1; }
# Icons and the .desktop template: inside a bundle under _internal/resources, in the source tree under resources.
resources="$bundle/_internal/resources"
[ -f "$resources/gemmadesk.desktop" ] || resources="$here/../resources"
[ -f "$resources/gemmadesk.desktop" ] || { echo "resources not found (looked in $resources)" >&2; exit 1; }

# Desktop Entry spec: a quoted Exec argument escapes \ " ` $ with a backslash, then the string-level
# escaping doubles every backslash.
quoted_exe=$(printf '%s' "$exe" | sed -e 's/[\\"`$]/\\&/g' -e 's/\\/\\\\/g')
mkdir -p "$apps_dir"
sed -e "s|^Exec=.*|Exec=\"$(printf '%s' "$quoted_exe" | sed 's/[|&\\]/\\&/g')\"|" \
    -e "s|^TryExec=.*|TryExec=$(printf '%s' "$exe" | sed 's/[|&\\]/\\&/g')|" \
    -e '/^# packaging\/install-linux-desktop.sh/d' \
    "$resources/gemmadesk.desktop" > "$desktop_file.tmp"
mv "$desktop_file.tmp" "$desktop_file"
chmod 644 "$desktop_file"

for size in $SIZES; do
    mkdir -p "$icons_dir/${size}x${size}/apps"
    cp "$resources/icons/$ICON_NAME-$size.png" "$icons_dir/${size}x${size}/apps/$ICON_NAME.png"
done
mkdir -p "$icons_dir/scalable/apps"
cp "$resources/icons/$ICON_NAME.svg" "$icons_dir/scalable/apps/$ICON_NAME.svg"
refresh_caches
echo "installed $desktop_file -> $exe"
