#!/usr/bin/env python3
"""Precision and recall of near-duplicate detection (feedsvc/upstream/stories.py)
on labelled pairs built here: reprints of one story under other headers,
footers, source lines and small edits (positives), and different stories on
the same topic, which share its vocabulary and phrasing (negatives).

    .venv/bin/python bench/near_duplicates.py [--pairs 240] [--seed 13]

The pairs are split in two halves at random; the threshold is the middle of
the thresholds with the best F1 on the first half, and the table is reported
on the second.
Writes docs/NEAR_DUPLICATES.md's table to stdout and bench/results/near_duplicates.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from feedsvc.upstream.stories import normalised, similarity  # noqa: E402

PLACES = ["昆明", "曲靖", "玉溪", "保山", "昭通", "丽江", "普洱", "临沧", "大理", "红河", "文山",
          "西双版纳", "楚雄", "德宏", "怒江", "迪庆"]
TOPICS: dict[str, list[str]] = {
    "咖啡": ["{p}咖啡种植面积达到{n}万亩，比上年增加{m}万亩。",
             "今年一季度，{p}咖啡出口{n}千吨，同比增长百分之{m}。",
             "{p}新建精品咖啡庄园{m}座，带动{n}千户农户增收。",
             "当地咖啡企业与{m}家海外采购商签订了供货协议，合同金额{n}亿元。",
             "{p}咖啡豆收购价每公斤{n}元，创近{m}年新高。",
             "专家表示，精深加工是提升咖啡附加值的关键，{p}已建成{m}条生产线。",
             "在{p}举办的咖啡节上，{n}千名游客品尝了本地咖啡。",
             "{p}农业农村局负责人介绍，全市咖啡产业综合产值突破{n}亿元。"],
    "地铁": ["{p}地铁{m}号线今日开始空载试运行，全线设车站{n}座。",
             "试运行期间，列车按正式运营时刻表测试信号、供电和通信系统。",
             "{p}轨道交通线网总里程达到{n}公里，日均客流{m}十万人次。",
             "地铁公司表示，{m}号线预计于{n}月底开通初期运营。",
             "新线路连接{p}主城与新区，沿线有{m}所高校和{n}个居民区。",
             "为方便换乘，{p}在{m}个站点增设了公交接驳线路。",
             "地铁建设累计完成投资{n}亿元，带动就业{m}万人。",
             "{p}市民可通过手机扫码乘车，票价最高{m}元。"],
    "旅游": ["五一假期，{p}共接待游客{n}万人次，同比增长百分之{m}。",
             "{p}旅游总收入{n}亿元，恢复到疫情前的百分之{m}。",
             "古城、湿地和雪山是游客最喜爱的{m}类景点，{p}客房入住率超过百分之{n}。",
             "{p}推出{m}条精品旅游线路，吸引{n}万名省外游客。",
             "文旅部门加强市场监管，{p}共检查旅游企业{n}家次。",
             "{p}夜间经济持续升温，{m}个夜市日均客流{n}千人次。",
             "民宿预订量较去年增长{m}倍，{p}新增民宿{n}家。",
             "在{p}，非遗展演和民族节庆活动共举办{n}场。"],
    "教育": ["{p}今年新建中小学{m}所，新增学位{n}千个。",
             "{p}高校毕业生就业率达到百分之{n}，比上年提高{m}个百分点。",
             "{p}教师招聘计划{n}百人，其中乡村教师占百分之{m}。",
             "全市{m}所职业院校与{n}家企业开展订单式培养。",
             "{p}义务教育阶段课后服务覆盖率达到百分之{n}。",
             "教育部门投入{n}亿元改善{p}农村学校办学条件。",
             "{p}学前教育毛入园率达到百分之{n}，新增公办幼儿园{m}所。",
             "{m}名{p}学生在全国科技创新大赛中获奖。"],
    "环保": ["{p}主要湖泊水质持续改善，{m}个断面达到三类水标准。",
             "{p}空气质量优良天数比例达到百分之{n}。",
             "今年{p}完成植树造林{n}万亩，森林覆盖率提高{m}个百分点。",
             "{p}关停整治污染企业{n}家，削减排放{m}千吨。",
             "环保部门在{p}开展入河排污口排查，发现问题{n}处。",
             "{p}建成污水处理厂{m}座，日处理能力{n}万吨。",
             "{p}生活垃圾分类覆盖{n}万户居民，回收利用率百分之{m}。",
             "湿地公园建设让{p}的候鸟数量增加到{n}千只。"],
}
HEADERS = ["本报讯 ", "本报讯（记者 {r}）", "新华社{p}{d}电 ", "新华社{p}{d}电（记者 {r}）",
           "【{p}日报】", "中新网{p}{d}电 ", "云南网讯（记者 {r} 通讯员 {s}）", ""]
FOOTERS = ["", "（责任编辑：{r}）", "来源：新华社", "（完）", "编辑：{r} 审核：{s}",
           "本文来源：{p}日报 原标题：{t}", "【版权声明】转载请注明出处。", "（记者 {r}）"]
PEOPLE = ["王五", "李明", "张丽", "赵刚", "陈静", "刘洋", "杨帆", "周敏"]


def story(rng: random.Random, topic: str, place: str | None = None) -> dict[str, object]:
    """One story: a place, a title and 4-6 sentences of the topic with their numbers."""
    place = place or rng.choice(PLACES)
    picks = rng.sample(TOPICS[topic], rng.randint(4, 6))
    sentences = [s.format(p=place, n=rng.randint(2, 99), m=rng.randint(2, 30)) for s in picks]
    title = f"{place}{topic}{rng.choice(['新进展', '再创新高', '发展提速', '成效明显', '见闻'])}"
    return {"topic": topic, "place": place, "title": title, "sentences": sentences}


def render(rng: random.Random, s: dict[str, object], *, edits: bool) -> tuple[str, str]:
    """(title, HTML) of a story as one paper prints it."""
    fill = {"p": s["place"], "d": f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
            "r": rng.choice(PEOPLE), "s": rng.choice(PEOPLE), "t": s["title"]}
    sentences = list(s["sentences"])  # type: ignore[call-overload]
    title = str(s["title"])
    if edits:
        if rng.random() < 0.5 and len(sentences) > 4:
            del sentences[rng.randrange(1, len(sentences))]       # a paragraph cut for space
        if rng.random() < 0.4:
            sentences.append(rng.choice(["图为当地群众在活动现场。", "记者现场采访了相关负责人。",
                                         "相关工作仍在推进中。"]))
        if rng.random() < 0.5:
            title = title + rng.choice(["", "（图）", "——来自基层的报道"])
    paragraphs = [rng.choice(HEADERS).format(**fill) + sentences[0], *sentences[1:]]
    footer = rng.choice(FOOTERS).format(**fill)
    html = "".join(f"<p>{p}</p>" for p in paragraphs) + (f"<p>{footer}</p>" if footer else "")
    return title, html


def pairs(n: int, seed: int) -> list[tuple[str, str, bool]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = rng.choice(sorted(TOPICS))
        a = story(rng, topic)
        if i % 2 == 0:            # a reprint: the same story, another paper's dress
            b, label = a, True
        else:                     # another story on the same topic (often the same place)
            same_place = str(a["place"]) if rng.random() < 0.5 else None
            b, label = story(rng, topic, same_place), False
        ta, ha = render(rng, a, edits=False)
        tb, hb = render(rng, b, edits=label)
        out.append((normalised(ta, ha), normalised(tb, hb), label))
    return out


def table(scored: list[tuple[float, bool]], threshold: float) -> dict[str, float]:
    tp = sum(1 for s, y in scored if s >= threshold and y)
    fp = sum(1 for s, y in scored if s >= threshold and not y)
    fn = sum(1 for s, y in scored if s < threshold and y)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": threshold, "tp": tp, "fp": fp, "fn": fn,
            "tn": len(scored) - tp - fp - fn, "precision": precision, "recall": recall, "f1": f1}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=240)
    p.add_argument("--seed", type=int, default=13)
    args = p.parse_args()
    data = pairs(args.pairs, args.seed)
    scored = [(similarity(a, b), label) for a, b, label in data]
    random.Random(args.seed + 1).shuffle(scored)
    tune, test = scored[: len(scored) // 2], scored[len(scored) // 2:]
    grid = [round(0.05 * i, 2) for i in range(1, 20)]
    tuned = [table(tune, t) for t in grid]
    top = max(r["f1"] for r in tuned)
    # The middle of the best plateau: the most margin on both sides.
    plateau = [r for r in tuned if r["f1"] == top]
    best = plateau[len(plateau) // 2]
    result = {"pairs": len(scored), "tune": len(tune), "test": len(test),
              "chosen_on_tune": best, "on_test": table(test, best["threshold"]),
              "test_grid": [table(test, t) for t in grid]}
    out = BENCH / "results" / "near_duplicates.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    t = result["on_test"]
    print(f"{len(scored)} pairs ({sum(y for _, y in scored)} reprints), "
          f"threshold {best['threshold']} chosen on {len(tune)} (F1 {best['f1']:.3f})")
    print("| threshold | precision | recall | F1 | TP | FP | FN | TN |")
    print("|---|---|---|---|---|---|---|---|")
    for r in result["test_grid"]:
        mark = " **(chosen)**" if r["threshold"] == best["threshold"] else ""
        print(f"| {r['threshold']:.2f}{mark} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{r['f1']:.3f} | {r['tp']} | {r['fp']} | {r['fn']} | {r['tn']} |")
    print(f"on the held-out half: precision {t['precision']:.3f}, recall {t['recall']:.3f}")


if __name__ == "__main__":
    main()
