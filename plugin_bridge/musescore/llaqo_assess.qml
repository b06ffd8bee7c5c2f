// LLaQo: assess a recording: MuseScore plugin for MuseScore 3.x and MuseScore 4.x (Qt 5 and Qt 6 alike).
//
// The teacher opens the student's score, runs Plugins > LLaQo: assess a recording, and names the recording
// (Browse… where this MuseScore has a file dialog, or the path typed or pasted into the plugin's window,
// which starts filled in with a recording found next to the score). The plugin saves the open score as
// MusicXML in the temporary folder, asks the local `llaqo serve` (its loopback HTTP endpoint,
// docs/protocol.md) to analyse the recording against it, and writes the answer into the open score as one
// undo step: a comment above each bar with problems, wrong notes red (the played pitch named at the note),
// missed notes blue, extra notes and restarts marked, and the assessment in the title frame. On an error
// the window shows one line and the score is left untouched.
//
// Loading in both versions: the only imports are the three that MuseScore 3.x and 4.x both provide
// (QtQuick 2.0, MuseScore 3.0, FileIO 3.0); a file dialog is created at run time, in the first spelling
// this MuseScore knows (MuseScore 4.4+'s own, Qt 5's QtQuick.Dialogs 1.2, Qt 6's QtQuick.Dialogs), and the
// window works without any. MuseScore 4.4 reads the plugin's name and category from the `//4.4 ` lines
// below (MuseScore 3 sees comments; 4.0-4.3 get them from Component.onCompleted).
//
// Run headless (tests, batch use): `musescore3 -p llaqo_assess.qml SCORE` with a side file SCORE.llaqo.json
// {"audio": "/abs/take.flac", "port": 8766, "token": "", "save": "/abs/out.mscx", "log": "/abs/log.json"}:
// the plugin takes the audio from it, saves the annotated score to "save" and writes what happened to "log".
// With "interactive": true (and no "audio") it goes the teacher's way instead: it builds the window and the
// file dialog, then presses Assess with whatever the window was filled in with, and logs which dialog it got.
import QtQuick 2.0
import MuseScore 3.0
import FileIO 3.0

MuseScore {
    id: plugin
    menuPath: "Plugins.LLaQo: assess a recording"
    description: "Send the open score and a recording to the local llaqo server and write its comments into the score"
    version: "0.2"
    pluginType: "dialog"
    requiresScore: true
    //4.4 title: "LLaQo: assess a recording"
    //4.4 categoryCode: "composing-arranging-tools"
    width: 560
    height: 200

    Component.onCompleted: {
        if (mscoreMajorVersion >= 4) {  // MuseScore 3 has neither property
            plugin.title = "LLaQo: assess a recording";
            plugin.categoryCode = "composing-arranging-tools";
        }
    }

    // Where `llaqo serve` listens for plugins (its --http-port) and its --token, if it has one.
    property int port: 8766
    property string token: ""
    property var job: null
    property var fileDialog: null
    property string dialogKind: ""  // which spelling of a file dialog this MuseScore gave, "" for none
    property int maxPolls: 240  // the server holds each poll up to 15 s: an hour in all
    property int headerChars: 90  // header lines leave room for the composer's name in the title frame
    property var audioSuffixes: ["flac", "wav", "mp3", "ogg", "m4a", "aiff", "aif"]
    // A file dialog in each spelling, tried in turn: MuseScore 4.4+ registers its own (Qt 6 builds may ship
    // no QtQuick.Dialogs at all); MuseScore 3.x and 4.0-4.3 run Qt 5; a plain Qt 6 has QtQuick.Dialogs 6.
    property var dialogSpellings: [
        {kind: "MuseScore", folder: "folder", url: false,
         qml: "import MuseScore 3.0; FileDialog { title: 'LLaQo: pick the recording of this score' }"},
        {kind: "QtQuick.Dialogs 1.2", folder: "folder", url: true,
         qml: "import QtQuick.Dialogs 1.2; FileDialog { title: 'LLaQo: pick the recording of this score'; " +
              "selectExisting: true; nameFilters: ['Audio (*.flac *.wav *.mp3 *.ogg *.m4a *.aiff *.aif)', 'All files (*)'] }"},
        {kind: "QtQuick.Dialogs 6", folder: "currentFolder", url: true,
         qml: "import QtQuick.Dialogs; FileDialog { title: 'LLaQo: pick the recording of this score'; " +
              "nameFilters: ['Audio (*.flac *.wav *.mp3 *.ogg *.m4a *.aiff *.aif)', 'All files (*)'] }"}
    ]

    FileIO { id: file }

    Timer {
        id: afterRepaint
        interval: 50
        onTriggered: plugin.finish(plugin.assess(plugin.absolute(audioField.text.trim())))
    }

    Rectangle {
        anchors.fill: parent
        color: "#f5f5f5"

        Column {
            anchors.fill: parent
            anchors.margins: 12
            spacing: 8

            Text {
                text: "Recording of this score (an audio file on this computer):"
                font.pixelSize: 13
            }
            Rectangle {
                width: parent.width
                height: 28
                color: "white"
                border.color: "#8a8a8a"
                TextInput {
                    id: audioField
                    objectName: "recording"
                    anchors.fill: parent
                    anchors.margins: 6
                    clip: true
                    selectByMouse: true
                    font.pixelSize: 13
                    onAccepted: plugin.submit()
                }
            }
            Row {
                spacing: 8
                Repeater {
                    model: ["Browse…", "Assess", "Close"]
                    Rectangle {
                        visible: modelData !== "Browse…" || plugin.fileDialog !== null
                        width: 90
                        height: 28
                        radius: 3
                        color: press.pressed ? "#c8c8c8" : "#e2e2e2"
                        border.color: "#8a8a8a"
                        Text {
                            anchors.centerIn: parent
                            text: modelData
                            font.pixelSize: 13
                        }
                        MouseArea {
                            id: press
                            anchors.fill: parent
                            onClicked: plugin.buttonClicked(modelData)
                        }
                    }
                }
            }
            Text {
                id: status
                objectName: "status"
                width: parent.width
                wrapMode: Text.Wrap
                color: "#b00020"
                font.pixelSize: 13
            }
        }
    }

    onRun: {
        job = readJob();
        if (job) {
            port = job.port || port;
            token = job.token || token;
        }
        if (!curScore) {
            finish("open the student's score first");
        } else if (job && !job.interactive) {
            finish(assess(job.audio));
        } else {
            prepareWindow();
            if (job)
                submit();  // a headless check of the teacher's path: Assess with what the window holds
        }
    }

    function buttonClicked(label) {
        if (label === "Browse…")
            fileDialog.open();
        else if (label === "Assess")
            submit();
        else
            stop();
    }

    // Assess what the window names. The request blocks MuseScore until the server answers, so the window
    // first shows that it is working (the Timer lets it repaint); a headless run goes straight on.
    function submit() {
        if (job) {
            finish(assess(absolute(audioField.text.trim())));
            return;
        }
        status.color = "#404040";
        status.text = "Assessing the recording… MuseScore waits until the llaqo server has answered.";
        afterRepaint.start();
    }

    // The window: the recording filled in when one is found, and a file dialog when this MuseScore has one.
    function prepareWindow() {
        var score = scorePath();
        audioField.text = (job && job.audio) || guessRecording(score);
        fileDialog = makeFileDialog(folderOf(score));
    }

    function makeFileDialog(folder) {
        for (var i = 0; i < dialogSpellings.length; i++) {
            var spelling = dialogSpellings[i];
            var dialog;
            try {
                dialog = Qt.createQmlObject(spelling.qml, plugin, "llaqoFileDialog");
            } catch (e) {
                continue;  // this MuseScore does not know that spelling
            }
            if (folder)
                dialog[spelling.folder] = spelling.url ? fileUrl(folder) : folder;
            dialog.accepted.connect(function () {
                audioField.text = pickedPath(dialog);
                submit();
            });
            dialogKind = spelling.kind;
            return dialog;
        }
        return null;
    }

    function pickedPath(dialog) {
        if (dialog.filePath)  // MuseScore 4.4+
            return dialog.filePath;
        return urlToPath(String(dialog.selectedFile || dialog.fileUrl || ""));  // Qt 6, Qt 5
    }

    // The open score's file: `curScore.path` (MuseScore 3.6+, 4.x), else the score named on the command line.
    function scorePath() {
        if (curScore && curScore.path)
            return String(curScore.path);
        var args = Qt.application.arguments;
        for (var i = 1; i < args.length; i++)
            if (isScoreFile(args[i]))
                return args[i];
        return "";
    }

    function isScoreFile(path) {
        return /\.(musicxml|xml|mxl|mscz|mscx|mid|midi)$/i.test(path);
    }

    function folderOf(path) {
        var cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
        return cut > 0 ? path.substring(0, cut) : "";
    }

    // A recording next to the score with its name (SCORE.flac, SCORE_take.wav, …), else the score's folder.
    function guessRecording(score) {
        if (!score)
            return "";
        var stem = score.replace(/\.[^.\/\\]*$/, "");
        var names = [stem, stem + "_take", stem + "-take"];
        for (var i = 0; i < names.length; i++) {
            for (var j = 0; j < audioSuffixes.length; j++) {
                file.source = names[i] + "." + audioSuffixes[j];
                if (file.exists())
                    return file.source;
            }
        }
        return folderOf(score) + "/";
    }

    // The server needs an absolute path: `~/…` is the home folder, a bare name sits next to the score.
    function absolute(path) {
        if (path.indexOf("~/") === 0)
            return file.homePath() + path.substring(1);
        if (path && !/^(\/|[A-Za-z]:[\/\\])/.test(path) && folderOf(scorePath()))
            return folderOf(scorePath()) + "/" + path;
        return path;
    }

    function fileUrl(path) {
        return (path.charAt(0) === "/" ? "file://" : "file:///") + path.replace(/\\/g, "/");
    }

    function urlToPath(url) {
        if (url.indexOf("file://") !== 0)
            return url;
        return decodeURIComponent(url.replace(/^file:\/\//, "").replace(/^\/([A-Za-z]:)/, "$1"));
    }

    // The side file of a headless run: SCORE.llaqo.json next to a score named on the command line.
    function readJob() {
        var args = Qt.application.arguments;
        for (var i = 1; i < args.length; i++) {
            file.source = args[i] + ".llaqo.json";
            if (isScoreFile(args[i]) && file.exists())
                return JSON.parse(file.read());
        }
        return null;
    }

    // Ask the server; on success write the comments into the open score. Returns "" or an error line.
    function assess(audioPath) {
        if (!audioPath || /[\/\\]$/.test(audioPath))
            return "name the recording first (an audio file: .flac, .wav, .mp3, …)";
        var base = file.tempPath() + "/llaqo-score-" + Date.now();
        if (!writeScore(curScore, base, "musicxml"))
            return "could not save the open score for the server (" + base + ".musicxml)";
        var answer = call("POST", "/v1/annotate", JSON.stringify({score: base + ".musicxml", audio: audioPath}));
        // the analysis can outlast one request: ask for the job's answer until it is there
        for (var tries = 0; answer.type === "pending" && tries < maxPolls; tries++)
            answer = call("GET", "/v1/jobs/" + answer.job, null);
        if (answer.type === "pending")
            return "the llaqo server took too long to answer";
        if (answer.type === "error")
            return answer.message;
        write(answer.annotations);
        return "";
    }

    // One synchronous request to the server; its JSON answer, or {type: "error"} when there is none.
    function call(method, path, body) {
        var request = new XMLHttpRequest();
        var silent = {type: "error", message: "the llaqo server did not answer on port " + port +
                                              " (is `llaqo serve` running?)"};
        try {
            request.open(method, "http://127.0.0.1:" + port + path, false);  // synchronous: works headless too
            if (body !== null)
                request.setRequestHeader("Content-Type", "application/json");
            if (token)
                request.setRequestHeader("Authorization", "Bearer " + token);
            request.send(body);
        } catch (e) {
            return silent;
        }
        if (request.status === 0)
            return silent;
        try {
            return JSON.parse(request.responseText);
        } catch (e) {
            return {type: "error", message: "the server's answer was not JSON (HTTP " + request.status + ")"};
        }
    }

    // All edits in one command: one undo step.
    function write(plan) {
        curScore.startCmd();
        for (var i = 0; i < plan.bar_texts.length; i++) {
            var b = plan.bar_texts[i];
            addText(0, b.measure_index, 0, b.text, "");
        }
        for (var j = 0; j < plan.notes.length; j++) {
            var n = plan.notes[j];
            var voice = colourNote(n);
            if (voice >= 0 && n.label)
                addText(n.part, n.measure_index, n.offset_ql, n.label, n.colour, voice);
        }
        for (var k = 0; k < plan.marks.length; k++) {
            var m = plan.marks[k];
            addText(m.part, m.measure_index, m.offset_ql, m.text, "");
        }
        curScore.addText("lyricist", wrap(plan.header, headerChars));  // left in the title frame, under the title
        curScore.endCmd();
    }

    // Break each paragraph of `text` into lines of at most `width` characters, at spaces.
    function wrap(text, width) {
        return text.split("\n").map(function (paragraph) {
            var lines = [], line = "";
            paragraph.split(" ").forEach(function (word) {
                if (line && line.length + 1 + word.length > width) {
                    lines.push(line);
                    line = word;
                } else {
                    line = line ? line + " " + word : word;
                }
            });
            return lines.concat([line]).join("\n");
        }).join("\n");
    }

    // A cursor on `staff` (voice `voice`) at the chord or rest `offset` quarter notes into measure `index`.
    function cursorAt(staff, voice, index, offset) {
        var c = curScore.newCursor();
        c.staffIdx = staff;
        c.voice = voice;
        c.rewind(0);
        for (var i = 0; i < index; i++)
            if (!c.nextMeasure())
                return null;
        var target = c.tick + Math.round(offset * division);
        var end = c.measure.lastSegment.tick;  // the measure's end bar line
        while (c.tick < target && c.next()) {}
        return c.segment && c.tick < end ? c : null;
    }

    function addText(staff, index, offset, text, colour, voice) {
        var c = cursorAt(staff, voice || 0, index, offset);
        if (!c)
            return;
        var t = newElement(Element.STAFF_TEXT);
        t.text = text;
        if (colour)
            t.color = colour;
        c.add(t);
    }

    // Colour the written note; returns the voice it is in, or -1 when it was not found.
    function colourNote(n) {
        var c = cursorAt(n.part, 0, n.measure_index, 0);
        if (!c)
            return -1;
        var target = c.tick + Math.round(n.offset_ql * division);
        for (var seg = c.measure.firstSegment; seg; seg = seg.nextInMeasure) {
            if (seg.tick !== target)
                continue;
            for (var v = 0; v < 4; v++) {
                var e = seg.elementAt(n.part * 4 + v);
                if (!e || e.type !== Element.CHORD)
                    continue;
                for (var k = 0; k < e.notes.length; k++) {
                    if (e.notes[k].pitch === n.pitch) {
                        e.notes[k].color = n.colour;
                        return v;
                    }
                }
            }
        }
        return -1;
    }

    // Report the outcome: in the window for the teacher (it stays open to try again), or the side file's
    // save and log when headless.
    function finish(error) {
        if (job) {
            if (!error && job.save)
                writeScore(curScore, job.save.replace(/\.mscx$/, ""), "mscx");
            file.source = job.log || (file.tempPath() + "/llaqo-plugin-log.json");
            file.write(JSON.stringify({ok: !error, error: error, dialog: dialogKind, recording: audioField.text}));
            stop();
        } else if (error) {
            status.color = "#b00020";
            status.text = "LLaQo: " + error.replace(/\.$/, "") + ". The score was not changed.";
        } else {
            stop();
        }
    }

    function stop() {
        if (typeof quit === "function")
            quit();  // MuseScore 4
        else
            Qt.quit();
    }
}
