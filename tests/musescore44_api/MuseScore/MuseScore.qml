// The plugin root type `MuseScore` of MuseScore 4.4+ (PluginAPI): its properties, run signal and methods.
import QtQuick

Item {
    property string menuPath
    property string title
    property string version
    property string description
    property string pluginType
    property string dockArea
    property bool requiresScore: true
    property string thumbnailName
    property string categoryCode
    readonly property int division: 480
    readonly property int mscoreVersion: 40400
    readonly property int mscoreMajorVersion: 4
    readonly property int mscoreMinorVersion: 4
    readonly property int mscoreUpdateVersion: 0
    readonly property real mscoreDPI: 96
    property var curScore: null  // set by the test: the real one is read-only
    property bool quitCalled: false

    signal run()

    function quit() { quitCalled = true; }
    function newElement(type) { return null; }
    function writeScore(score, name, ext) { return false; }
    function readScore(name, noninteractive) { return null; }
    function cmd(name) {}
}
