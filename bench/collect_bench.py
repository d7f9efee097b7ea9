#!/usr/bin/env python3
"""Time and memory of one `feedsvc collect` pass over 20 web-page sources with
full text, against loopback upstreams (each source on its own 127.0.0.N
address, so the per-host politeness is what it is for 20 papers).

    .venv/bin/python bench/collect_bench.py [--sources 20] [--items 10]

Each list page (GBK for every other paper) links `--items` article pages of
about 4 kB of Chinese text amid navigation and footers. Reports the wall time
of the pass, the peak RSS of the collect process and of its extractor child,
and the posts stored; results go to bench/results/collect.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SENTENCES = ["本报讯 全市重点项目建设加快推进，一季度完成投资同比增长百分之十二。",
             "据介绍，今年以来当地聚焦产业升级，新开工项目六十个，总投资三百亿元。",
             "在项目现场，施工人员正在紧张作业，塔吊林立，车辆往来穿梭。",
             "负责人表示，将进一步优化营商环境，为企业提供全流程服务。",
             "专家认为，扩大有效投资对稳增长、保就业具有重要作用。",
             "下一步，将加强要素保障，推动更多项目早开工、早投产、早见效。"]


def article(paper: int, n: int, charset: str) -> bytes:
    body = "".join(f"<p>{SENTENCES[(i + n) % len(SENTENCES)]}第{paper}报第{n}篇。</p>"
                   for i in range(24))
    page = (f'<!DOCTYPE html><html><head><meta charset="{charset}"><title>第{n}篇</title></head>'
            f'<body><div class="nav">{"<a href=/>首页</a> " * 30}</div><div class="article">'
            f"<h1>第{paper}报 第{n}篇</h1>{body}</div>"
            f'<div class="footer">{"版权所有 联系我们 广告服务 " * 20}</div></body></html>')
    return page.encode(charset)


def list_page(paper: int, items: int, charset: str) -> bytes:
    lis = "".join(f'<li><a href="/a/{n}.html">第{paper}报 第{n}篇新闻</a>'
                  f'<span class="date">2022-03-{1 + n % 28:02d} 08:{n % 60:02d}</span></li>'
                  for n in range(items))
    return (f'<html><head><meta charset="{charset}"><title>第{paper}报</title></head><body>'
            f'<ul class="news">{lis}</ul></body></html>').encode(charset)


def serve(address: str, paper: int, items: int) -> ThreadingHTTPServer:
    charset = "gbk" if paper % 2 else "utf-8"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/list.html":
                body = list_page(paper, items, charset)
            elif self.path.startswith("/a/"):
                body = article(paper, int(self.path[3:].split(".")[0]), charset)
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer((address, 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sources", type=int, default=20)
    p.add_argument("--items", type=int, default=10)
    args = p.parse_args()
    servers = [serve(f"127.0.0.{i + 2}", i, args.items) for i in range(args.sources)]
    rules = {"items": "ul.news li", "title": "a", "link": "a", "date": "span.date",
             "date_format": "%Y-%m-%d %H:%M"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "_posts").mkdir()
        sources = [{"url": f"http://{s.server_address[0]}:{s.server_address[1]}/list.html",
                    "page": rules, "fulltext": True} for s in servers]
        config = {"site": {"title": "bench", "url": "https://news.example.com",
                           "timezone": "Asia/Shanghai"},
                  "categories": {"bench": {"title": "bench", "sources": sources}}}
        (root / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True),
                                          encoding="utf-8")
        start = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "feedsvc", "collect", "--config",
                              str(root / "config.yaml")], capture_output=True, text=True,
                             cwd=REPO, timeout=1800)
        took = time.monotonic() - start
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        posts = len(list((root / "_posts").rglob("*.md")))
        full = sum("全市重点项目建设" in p.read_text(encoding="utf-8")
                   for p in (root / "_posts").rglob("*.md"))
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-500:]
    result = {"sources": args.sources, "items_per_source": args.items, "seconds": round(took, 2),
              "peak_rss_mib_largest_process": round(children.ru_maxrss / 1024, 1),
              "posts": posts, "posts_with_full_text": full, "exit": run.returncode,
              "summary": summary, "cpus": os.cpu_count(),
              "load_average": os.getloadavg()}
    out = BENCH / "results" / "collect.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{args.sources} page sources × {args.items} articles, full text: {took:.1f} s, "
          f"peak RSS of the largest process {result['peak_rss_mib_largest_process']} MiB, "
          f"{posts} posts ({full} with the article), exit {run.returncode}")
    print(f"load average during the run: {result['load_average']}")
    print(summary)


if __name__ == "__main__":
    main()
