// MuseScore 4.4+'s own FileDialog (module MuseScore 3.0): a path-based dialog, not Qt's.
import QtQuick

QtObject {
    property int type: 0
    property string title
    property bool visible: false
    property string folder
    property string filePath
    property url fileUrl
    property var fileUrls: []

    signal accepted()
    signal rejected()

    function open() { visible = true; }
    function close() { visible = false; }
}
