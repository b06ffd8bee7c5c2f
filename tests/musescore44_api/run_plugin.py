"""Load a MuseScore plugin in a Qt 6 QML engine with the stand-ins beside this file (or another API folder),
run it as MuseScore 4.4 does (create the component, then emit `run`) with an open score at SCORE, press its
Assess button, and print as JSON what happened: loaded (and the errors if not), the file dialog it made,
the recording filled in, the message shown while assessing and after, whether it quit.

    python run_plugin.py PLUGIN.qml API_FOLDER SCORE_PATH
"""

from __future__ import annotations

import json
import sys

from PySide6.QtCore import Q_ARG, QEventLoop, QMetaObject, QObject, QTimer, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtQml import QQmlComponent, QQmlEngine


def main(plugin: str, api: str, score: str) -> dict:
    app = QGuiApplication([])  # noqa: F841 (QML needs the application object alive)
    engine = QQmlEngine()
    engine.addImportPath(api)
    component = QQmlComponent(engine, QUrl.fromLocalFile(plugin))
    if component.status() != QQmlComponent.Status.Ready:
        return {"loaded": False, "errors": component.errorString().strip()}
    root = component.create()
    if root is None:
        return {"loaded": False, "errors": component.errorString().strip()}
    root.setProperty("curScore", {"path": score})
    QMetaObject.invokeMethod(root, "run")
    shown = {
        "loaded": True,
        "title": root.property("title"),
        "dialog": root.property("dialogKind"),
        "recording": root.findChild(QObject, "recording").property("text"),
    }
    status = root.findChild(QObject, "status")
    QMetaObject.invokeMethod(root, "buttonClicked", Q_ARG("QVariant", "Assess"))
    shown["while_assessing"] = status.property("text")
    wait = QEventLoop()
    QTimer.singleShot(1000, wait.quit)  # the plugin lets its window repaint before it sends the request
    wait.exec()
    shown["message"] = status.property("text")
    shown["quit"] = root.property("quitCalled")
    return shown


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
