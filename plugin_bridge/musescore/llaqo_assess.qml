// LLaQo: assess a recording: MuseScore plugin (MuseScore 3.x; written to MuseScore 4's plugin rules too).
//
// The teacher opens the student's score, runs Plugins > LLaQo: assess a recording and picks the audio
// file. The plugin saves the open score as MusicXML in the temporary folder, asks the local `llaqo serve`
// (its loopback HTTP endpoint, docs/protocol.md) to analyse the recording against it, and writes the
// answer into the open score as one undo step: a comment above each bar with problems, wrong notes red
// (the played pitch named at the note), missed notes blue, extra notes and restarts marked, and the
// assessment in the title frame. On an error the teacher sees one line and the score is left untouched.
//
// Run headless (tests, batch use): `musescore3 -p llaqo_assess.qml SCORE` with a side file SCORE.llaqo.json
// {"audio": "/abs/take.flac", "port": 8766, "token": "", "save": "/abs/out.mscx", "log": "/abs/log.json"}:
// the plugin takes the audio from it, saves the annotated score to "save" and writes what happened to "log".
import QtQuick 2.0
import QtQuick.Dialogs 1.2
import MuseScore 3.0
import FileIO 3.0

MuseScore {
    id: plugin
    menuPath: "Plugins.LLaQo: assess a recording"
    description: "Send the open score and a recording to the local llaqo server and write its comments into the score"
    version: "0.1"

    // Where `llaqo serve` listens for plugins (its --http-port) and its --token, if it has one.
    property int port: 8766
    property string token: ""
    property var job: null
    property int maxPolls: 240  // the server holds each poll up to 15 s: an hour in all
    property int headerChars: 90  // header lines leave room for the composer's name in the title frame

    FileIO { id: scratch }
    FileIO { id: jobFile }
    FileIO { id: logFile }

    FileDialog {
        id: audioDialog
        title: "LLaQo: pick the recording of this score"
        nameFilters: ["Audio (*.wav *.flac *.ogg *.mp3 *.aiff *.aif)", "All files (*)"]
        onAccepted: finish(assess(urlToPath(audioDialog.fileUrl.toString())))
        onRejected: finish("")
    }

    MessageDialog {
        id: message
        title: "LLaQo"
        onAccepted: stop()
    }

    Component.onCompleted: {
        if (plugin.hasOwnProperty("title"))  // MuseScore 4 shows `title`; MuseScore 3 has no such property
            plugin.title = "LLaQo: assess a recording";
    }

    onRun: {
        if (!curScore) {
            finish("open the student's score first");
            return;
        }
        job = readJob();
        if (job) {
            port = job.port || port;
            token = job.token || token;
            finish(assess(job.audio));
        } else {
            audioDialog.open();
        }
    }

    // The side file of a headless run: SCORE.llaqo.json next to a score named on the command line.
    function readJob() {
        var args = Qt.application.arguments;
        for (var i = 1; i < args.length; i++) {
            jobFile.source = args[i] + ".llaqo.json";
            if (/\.(musicxml|xml|mxl|mscz|mscx|mid|midi)$/i.test(args[i]) && jobFile.exists())
                return JSON.parse(jobFile.read());
        }
        return null;
    }

    function urlToPath(url) {
        return decodeURIComponent(url.replace(/^file:\/\//, "").replace(/^\/([A-Za-z]:)/, "$1"));
    }

    // Ask the server; on success write the comments into the open score. Returns "" or an error line.
    function assess(audioPath) {
        if (!audioPath)
            return "no recording was picked";
        var base = scratch.tempPath() + "/llaqo-score-" + Date.now();
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

    // Report the outcome: a dialog for the teacher, or the side file's save and log when headless.
    function finish(error) {
        if (job) {
            if (!error && job.save)
                writeScore(curScore, job.save.replace(/\.mscx$/, ""), "mscx");
            logFile.source = job.log || (scratch.tempPath() + "/llaqo-plugin-log.json");
            logFile.write(JSON.stringify({ok: !error, error: error}));
            stop();
        } else if (error) {
            message.text = "LLaQo: " + error + "\nThe score was not changed.";
            message.open();
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
